# The two commands of the README: `make run` serves the demo, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# `make bench-pg` works in a database of its own on the local PostgreSQL server (created and dropped by
# the run); BENCH_ARGS passes flags to bench/run.py, e.g. BENCH_ARGS=--quick.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/filegate_bench
BENCH_ARGS ?=

.PHONY: run test lint bench bench-pg venv clean chromium

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

# DEBUG is off unless set: `make run` is the one place that turns it on (development keys, debug pages).
run: venv
	DEBUG=true $(BIN)/python manage.py migrate --noinput
	DEBUG=true $(BIN)/python manage.py setup_demo --base-url http://$(HOST):$(PORT)
	DEBUG=true $(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The browser tests (tests/browser) drive Debian's Chromium; Playwright never downloads a browser here.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }

test: lint chromium
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-pg: venv
	pg_isready --quiet --host 127.0.0.1 --port 5432 || \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data db.sqlite3 db.sqlite3-wal db.sqlite3-shm bench/.work .artifacts
