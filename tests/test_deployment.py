"""The deployment files: the Procfile consumes every queue tasks are routed to, each queue in a
process type of its own, with exactly one beat; gunicorn's settings load and follow the
environment. (tests/integration/test_scale_out.py runs these processes.)"""

import runpy
import shlex
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def procfile() -> dict[str, list[str]]:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip() and not line.startswith("#")]
    entries = [line.split(":", 1) for line in lines]
    names = [name for name, _ in entries]
    assert len(names) == len(set(names)), f"a process type is listed twice: {names}"
    return {name: shlex.split(command) for name, command in entries}


def queues_of(args: list[str]) -> set[str]:
    return set(args[args.index("--queues") + 1].split(",")) if "--queues" in args else set()


def test_every_routed_queue_has_its_own_worker_and_there_is_one_beat():
    processes = procfile()
    workers = {name: args for name, args in processes.items() if args[:4] == ["celery", "-A", "secai", "worker"]}
    assert {queue for args in workers.values() for queue in queues_of(args)} >= {"scoring", "explain", "training", "actions"}
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} | {settings.CELERY_TASK_DEFAULT_QUEUE}
    consumed = {queue for args in workers.values() for queue in queues_of(args)}
    assert routed <= consumed, f"tasks routed to {routed - consumed} would never run"
    # A queue per process type, so a long training never waits behind scoring, nor the reverse.
    assert all(len(queues_of(args)) == 1 for args in workers.values()), workers
    beats = [name for name, args in processes.items() if args[:4] == ["celery", "-A", "secai", "beat"]]
    assert beats == ["beat"]
    assert processes["web"] == ["gunicorn", "--config", "gunicorn.conf.py"]
    assert processes["release"] == ["python", "manage.py", "migrate", "--noinput"]


def test_gunicorn_settings_follow_the_environment(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "7")
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.delenv("SECAI_BIND", raising=False)
    monkeypatch.delenv("GUNICORN_CONTROL_SOCKET", raising=False)
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (conf["workers"], conf["bind"], conf["wsgi_app"]) == (7, "0.0.0.0:9123", "secai.wsgi:application")
    assert conf["timeout"] > 0 and conf["max_requests"] > 0 and conf["control_socket_disable"] is True
    assert conf["preload_app"] is False
