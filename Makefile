# SecAI Review. `make demo` runs the product on NSL-KDD; `make test` runs the whole suite.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock | cksum | cut -d' ' -f1)

.PHONY: demo test lint install clean lock bench bench-actions

$(STAMP): requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

PORT ?= 8000

demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo --port $(PORT)

test: install
	$(BIN)/python scripts/run_tests.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The six performance figures of issue 6 next to their raw limits (PostgreSQL, Redis, gunicorn and
# real Celery workers; 8 to 20 minutes on 2 cores). ONLY=scoring,latency runs a subset;
# SECAI_BENCH_EVENTS=200000 shrinks the worker-memory run (default a million). README: "Measured performance".
bench: install
	$(BIN)/python -m bench $(if $(ONLY),--only $(ONLY))

# Decisions and deliveries per second on the actions side (SQLite, or SECAI_BENCH_DATABASE_URL).
bench-actions: install
	$(BIN)/python scripts/bench_actions.py

# Re-pin every dependency from requirements*.in into requirements.lock.
lock:
	rm -rf .lock-venv && $(PY) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.in -r requirements-dev.in
	.lock-venv/bin/pip freeze --exclude-editable | sort > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf var
