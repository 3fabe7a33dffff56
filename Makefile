# saasops — the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test lint format bench clean-data venv

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "saasops needs Python 3.11 or newer")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "saasops | installing pinned requirements into $(VENV)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	@$(PY) -m saasops.devstack run

test: $(STAMP)
	@$(PY) -m saasops.devstack test -- $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DATABASE_URL=postgresql://lint@localhost/lint REDIS_URL=redis://localhost $(PY) manage.py makemigrations --check --dry-run >/dev/null 2>&1 || (echo "missing migrations: run manage.py makemigrations"; exit 1)
	DATABASE_URL=postgresql://lint@localhost/lint REDIS_URL=redis://localhost $(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Benchmarks (docs/BENCHMARKS.md): each bench/*.py in its own embedded stack (profile `bench`,
# data kept in .devdata/bench/), results in bench/results/*.json. provisioning.py goes first:
# it makes the 1,000-tenant population the others measure against.
BENCHES := bench/provisioning.py $(filter-out bench/provisioning.py,$(sort $(wildcard bench/[!_]*.py)))
bench: $(STAMP)
	@status=0; for b in $(BENCHES); do \
		echo "saasops | benchmark $$b"; \
		$(PY) -m saasops.devstack exec --profile=bench -- $(PY) $$b || status=1; \
	done; exit $$status

clean-data:
	rm -rf .devdata
