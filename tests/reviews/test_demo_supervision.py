"""make demo keeps its processes running: a worker killed with SIGKILL is started again."""

import io
import os
import signal
import sys
import time

import pytest
from django.core.management.base import CommandError

from reviews.management.commands import demo

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def command():
    cmd = demo.Command(stdout=io.StringIO())
    cmd.children = {}
    yield cmd
    cmd._stop_children()


def test_a_killed_process_is_started_again_under_its_name(command, tmp_path):
    command._start("worker", SLEEPER, tmp_path)
    first = command.children["worker"].process
    command.children["worker"].started -= demo.RESTART_AFTER_SECONDS  # it has been up a while
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    command._supervise(tmp_path, rounds=1)
    again = command.children["worker"].process
    assert again.pid != first.pid and again.poll() is None
    assert "worker stopped (exit code -9)" in command.stdout.getvalue()
    assert command.stdout.getvalue().count("started worker") == 2


def test_a_process_that_dies_at_start_stops_the_demo_and_names_itself(command, tmp_path):
    command._start("beat", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path)
    deadline = time.monotonic() + 30
    while command.children["beat"].process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(CommandError, match=r"beat stopped \d+ s after it started \(exit code 3\); see .*beat\.log"):
        command._supervise(tmp_path, rounds=1)
