# Two commands do all the set-up: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run migrate lint test interop-latest fuzz bench dev auth-migrate clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install  ## serve on HOST:PORT (embedded PostgreSQL unless DATABASE_URL is set)
	$(PY) -m service run

migrate: install  ## apply database migrations and exit
	$(PY) -m service migrate

lint: install  ## ruff (lint and format) on service/ and tests/, mypy --strict on service/
	$(VENV)/bin/ruff check service tests
	$(VENV)/bin/ruff format --check service tests
	$(VENV)/bin/mypy

test: install lint  ## lint, then the whole suite against a real PostgreSQL
	bash tests/support/system-packages.sh
	$(PY) -m pytest $(PYTEST_ARGS)

interop-latest: install  ## the interop suite against the newest better-auth on npm, not the pinned one
	dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	$(PY) tests/support/latest_issuer.py "$$dir" && \
	INTEROP_ISSUER_DIR="$$dir" $(PY) -m pytest tests/interop $(PYTEST_ARGS)

fuzz: install  ## a long schemathesis run (FUZZ_EXAMPLES cases per operation, random seed)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-5000} FUZZ_RANDOM=1 $(PY) -m pytest tests/security/test_fuzz.py -p no:timeout $(PYTEST_ARGS)

bench: install  ## throughput/latency against in-run ceilings; results in .bench/
	cd tests && $(abspath $(PY)) -m bench $(BENCH_ARGS)

dev: install  ## PostgreSQL, the service on :8000 and the Next.js app (deploy/nextjs) on :3000; prints the URL to open and a curl
	$(PY) deploy/dev.py

auth-migrate: install  ## only Better Auth's database and tables for deploy/nextjs (scripts/migrate.ts, no prompt)
	$(PY) deploy/dev.py --migrate

clean:
	rm -rf $(VENV) .pytest_cache
