"""WSGI entry point (gunicorn secai.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "secai.settings.production")
application = get_wsgi_application()
