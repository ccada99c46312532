# The two commands a newcomer needs: `make run` and `make test`. `make help` lists the rest.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
# Developer conveniences, turned on explicitly for `make run` only.
RUN_ENV := DJANGO_DEBUG=1 EMAIL_BACKEND=django.core.mail.backends.console.EmailBackend

.PHONY: help run test test-webrtc test-instants lint format openapi bench lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Installs exactly what requirements.lock pins, each file checked against its hash; the project
# itself goes in editable, without resolving anything again.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# The web process, a Celery worker and beat from the Procfile (honcho), on the filesystem broker.
run: $(STAMP) ## install, migrate, load demo data, serve on 127.0.0.1:8000 and run the jobs
	$(RUN_ENV) $(BIN)/python manage.py migrate --no-input
	$(RUN_ENV) $(BIN)/python manage.py seed_demo
	$(RUN_ENV) HOST=$(HOST) PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho start -f Procfile -p $(PORT)

# The official AsyncAPI JSON schemas (npm's @asyncapi/specs) that asyncapi.yaml is checked
# against (tests/video/test_asyncapi.py); without npm that one check is skipped (failed in CI).
ASYNCAPI_SPECS := $(VENV)/npm/.asyncapi-specs-stamp
$(ASYNCAPI_SPECS): $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-save --no-audit --no-fund --prefix $(VENV)/npm @asyncapi/specs@6.11.1 \
	    && touch $@; \
	else echo "npm not found: asyncapi.yaml is not checked against the official AsyncAPI schema"; fi

test: $(STAMP) $(ASYNCAPI_SPECS) ## the whole suite (SQLite and in-memory, or DATABASE_URL / REDIS_URL when set)
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-webrtc

# Real peers, coturn and app servers in a network namespace with only loopback (tests/netns.py):
# the main run deselects these tests; outside CI, no namespace means they are not run.
test-webrtc: $(STAMP) ## the WebRTC tests in a loopback-only network namespace
	$(BIN)/python tests/netns.py $(BIN)/python -m pytest -m webrtc -p no:xdist tests/video

# Scheduling and billing again with the test clock (tests/clock.py) at each instant known to be
# hard: a Sunday evening, the hours before DST changes, a month's last half hour, 29 February.
test-instants: $(STAMP) ## the scheduling and billing tests at each hard instant of tests/clock.py
	@for t in $$($(BIN)/python -c 'from tests.clock import HARD_INSTANTS as h; print(*h.values())'); do \
	  echo "== TEST_NOW=$$t"; \
	  TEST_NOW=$$t $(BIN)/python -m pytest -n 2 --dist loadgroup -q tests/scheduling tests/billing \
	    || exit 1; \
	done

# The same checks run before each commit with pre-commit (.pre-commit-config.yaml).
lint: $(STAMP) ## ruff, ruff-format, mypy, import contracts, and migrations in step with the models
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=1 $(BIN)/mypy api audit scheduling billing video messaging
	$(BIN)/lint-imports
	DJANGO_DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Integer bounds in the schema follow the database backend: always generate it on the default one.
openapi: $(STAMP) ## regenerate openapi.yaml from the code
	DJANGO_DEBUG=1 DATABASE_URL= $(BIN)/python manage.py spectacular --file openapi.yaml --validate

bench: $(STAMP) ## run every benchmark; each prints one JSON line
	@for b in bench/bench_*.py; do DJANGO_DEBUG=1 $(BIN)/python $$b || exit 1; done

# Pins every dependency (with hashes) within pyproject.toml's ranges, for Python 3.11 (the one
# tested); run after changing pyproject.toml's dependencies, and commit requirements.lock.
lock: $(STAMP) ## re-pin requirements.lock from pyproject.toml (make lock UPGRADE=1 takes newer)
	$(BIN)/pip-compile --quiet --extra dev --generate-hashes --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) \
	  -o requirements.lock pyproject.toml

clean: ## remove the virtualenv and local databases
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm
