"""gunicorn settings of the web process (the Procfile's `web`). Values that differ between hosts
come from the environment, so one file serves a laptop and a production host."""

import multiprocessing
import os

wsgi_app = "secai.wsgi:application"
bind = os.environ.get("SECAI_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")

# Sync workers, one request at a time each: requests are short and CPU-bound (validating and
# COPYing a batch of 1,000 events takes about 0.1 s), so processes, not threads, use the cores.
# Two per core keeps a core busy while the other process waits on PostgreSQL.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count()))
worker_class = "sync"

# A batch of 5,000 events takes about half a second; a request still running after a minute is
# stuck (a lock, a dead database connection) and its worker is replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
# Behind a load balancer that reuses connections.
keepalive = 5

# Recycle each worker after a few thousand requests so slow growth in a long-lived process
# (caches, fragmentation) cannot accumulate; the jitter keeps them from restarting together.
max_requests = 2000
max_requests_jitter = 200

# Heartbeat files on tmpfs: a slow or full disk must not make the arbiter kill healthy workers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Each worker imports the application itself (no preload): `kill -HUP` then loads new code, and
# no database connection can be opened before the fork and shared between workers.
preload_app = False

# The proxy in front sets X-Forwarded-Proto; trust it only from the addresses named here.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")

# gunicorn's control socket defaults to one path per user, which several instances on one host
# would take from each other; it is on only when given a path of its own.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True
