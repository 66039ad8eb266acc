# SecAI Review. `make demo` runs the product on NSL-KDD; `make test` runs the whole suite.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock | cksum | cut -d' ' -f1)

.PHONY: demo test lint install clean lock bench bench-console bench-actions

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

bench: install
	$(BIN)/python scripts/benchmark.py

# Console latency with a million events on PostgreSQL (about 3 minutes to load).
bench-console: install
	$(BIN)/python scripts/bench_console.py

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
