"""Settings for `make demo` and local development: debug on, SQLite and the filesystem broker by default."""

import os

os.environ.setdefault("DEBUG", "1")

from secai.settings.base import *  # noqa: E402,F403
