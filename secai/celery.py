"""The Celery application; tasks are discovered in each app's tasks.py."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "secai.settings.local")

# filesystem:// brokers (make demo, simulate) write each message atomically: see secai/broker.py.
TRANSPORT_ALIASES["filesystem"] = "secai.broker:Transport"

app = Celery("secai")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# A worker keeps its database connection from one task to the next, as a web process keeps it
# from one request to the next: Django's close_old_connections before and after each task closes
# it only when it is broken, left in a transaction or older than CONN_MAX_AGE, and has the next
# query check its health first (CONN_HEALTH_CHECKS). Celery's own fix-up would otherwise close it
# after every task, and connecting again was a twentieth of a scoring batch's time. DB_REUSE_MAX
# (settings) turns that fix-up's closing off but for one forced close every 500 tasks (it counts
# its calls before and after each task against twice the setting).
@task_prerun.connect
@task_postrun.connect
def _close_old_connections(sender=None, **kwargs) -> None:
    if sender is not None and getattr(sender.request, "is_eager", False):
        return  # in-process (tests, eager mode): the caller owns the connection and its transaction
    from django.db import close_old_connections

    close_old_connections()
