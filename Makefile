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

run: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py runserver 127.0.0.1:8000

# The whole suite on SQLite (no servers needed); tests that need PostgreSQL, Redis or a
# browser skip themselves with the reason unless REQUIRE_SERVICES=1.
test: install
	$(PY) -m pytest

test-sqlite: test

test-postgres: install
	DATABASE_URL=$(PG_URL) $(PY) -m pytest

clean:
	rm -rf $(VENV) var db.sqlite3
