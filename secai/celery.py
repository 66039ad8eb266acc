"""The Celery application; tasks are discovered in each app's tasks.py."""

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "secai.settings.local")

# filesystem:// brokers (make demo, simulate) write each message atomically: see secai/broker.py.
TRANSPORT_ALIASES["filesystem"] = "secai.broker:Transport"

app = Celery("secai")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
