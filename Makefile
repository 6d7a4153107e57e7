# Two commands a newcomer needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: install run test test-sqlite test-postgres bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

# The Back Office with everything it needs, on this machine only (scripts/run_demo.py):
# migrate SQLite, start localstripe, seed demo orders and an admin user, then run the web
# server, a Celery worker and beat on the embedded broker until Ctrl-C. Ports and timings:
# DEMO_WEB_PORT (8000), DEMO_STRIPE_PORT (8420), DEMO_SETTLEMENT_SECONDS, DEMO_JOBS_EVERY_SECONDS.
run: install
	$(PY) scripts/run_demo.py

# The whole suite on SQLite (no servers needed); tests that need PostgreSQL, Redis or a
# browser skip themselves with the reason unless REQUIRE_SERVICES=1.
test: install
	$(PY) -m pytest

test-sqlite: test

test-postgres: install
	DATABASE_URL=$(PG_URL) $(PY) -m pytest

clean:
	rm -rf $(VENV) var db.sqlite3
