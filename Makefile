# Two commands a newcomer needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
# The demo and the tests run the development settings (DEBUG on, the refunds_dev app);
# production runs refunds_project.settings, manage.py's default.
DEV_SETTINGS := DJANGO_SETTINGS_MODULE=refunds_project.settings_dev

.PHONY: install run trigger api-token test test-sqlite test-postgres bench clean

# The runtime set (requirements.txt) plus the demo and test tools (requirements-dev.txt).
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# The Back Office with everything it needs, on this machine only (scripts/run_demo.py):
# migrate SQLite, start localstripe, seed demo orders and an admin user, then run the web
# server, a Celery worker and beat (honcho, Procfile.dev) on the embedded broker until Ctrl-C.
# Ports and timings: DEMO_WEB_PORT (8000), DEMO_STRIPE_PORT (8420), DEMO_SETTLEMENT_SECONDS,
# DEMO_JOBS_EVERY_SECONDS.
run: install
	$(DEV_SETTINGS) $(PY) scripts/run_demo.py

# Stripe's later word on a refund of the running demo, e.g.
#   make trigger ARGS="failed --failure-reason declined"
trigger: install
	$(DEV_SETTINGS) $(PY) manage.py stripe_trigger $(ARGS)

# A REST API token for a user of the demo's database, printed once (only its hash is kept):
#   make api-token API_USER=admin [API_TOKEN_NAME="returns portal"]
api-token: install
	$(DEV_SETTINGS) $(PY) manage.py create_api_token "$(API_USER)" --name "$(API_TOKEN_NAME)"

# The whole suite on SQLite (no servers needed); tests that need PostgreSQL, Redis or a
# browser skip themselves with the reason unless REQUIRE_SERVICES=1.
test: install
	$(DEV_SETTINGS) $(PY) -m pytest

test-sqlite: test

test-postgres: install
	$(DEV_SETTINGS) DATABASE_URL=$(PG_URL) $(PY) -m pytest

clean:
	rm -rf $(VENV) var db.sqlite3 build dist *.egg-info
