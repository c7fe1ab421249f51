# dropscore: the commands the README promises.
# `make test` and `make demo` work on a fresh clone: they create .venv and run `npm ci` when needed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov pins dependencies the project venv cannot share: it gets its own venv (requirements-infra.txt).
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed

.PHONY: help install test unit lint format typecheck check-infra demo up down status doctor chaos bench clean

help:
	@echo "make demo   - run a CSV end to end on the local stack (Azurite + emulators + dev host)"
	@echo "make test   - lint, type-check, check import layers and run every test (unit, functions, integration, e2e)"
	@echo "make check-infra - the Bicep templates in infra/, offline: checkov, parser and consistency tests"
	@echo "make up / down / status - the local stack"
	@echo "make doctor - the health check against make up's stack (python -m shared.doctor)"
	@echo "make chaos  - the full chaos run on a fresh local stack (kill -9, outages, faults; README: Chaos test)"
	@echo "make bench  - benchmarks (ratios against a baseline measured in the same run)"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(INFRA_STAMP): requirements-infra.txt
	test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/python -m pip install --quiet -r requirements-infra.txt
	touch $(INFRA_STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

install: $(STAMP) node_modules/.package-lock.json

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_import_rules.py

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

unit: $(STAMP)
	$(PY) -m pytest tests/unit tests/functions -q

# infra/ is verified offline only (no Azure subscription): checkov's Bicep checks, then tests/infra (pycep parse,
# settings/names/roles consistency with the app and the README, the postdeploy hook's commands).
check-infra: $(STAMP) $(INFRA_STAMP)
	$(INFRA_VENV)/bin/checkov --framework bicep --directory infra --skip-download --compact --quiet
	$(PY) -m pytest -q -p no:cacheprovider tests/infra

test: install lint check-infra
	$(PY) -m pytest -q

demo: install
	$(PY) -m localdev demo

up: install
	$(PY) -m localdev up

down: $(STAMP)
	$(PY) -m localdev down

status: $(STAMP)
	$(PY) -m localdev status

doctor: $(STAMP)
	$(PY) -m shared.doctor --settings .localdev/local.settings.json

# The full chaos run (python -m localdev chaos --help for a shorter or another seeded one).
chaos: install
	$(PY) -m localdev chaos

bench: install
	$(PY) bench/import_time.py
	$(PY) bench/emulator_scoring.py
	$(PY) bench/join.py
	$(PY) bench/poll_tick.py
	$(PY) bench/intake.py
	$(PY) bench/burst.py
	$(PY) bench/shard.py
	$(PY) bench/status_calls.py
	$(PY) bench/admission.py

clean:
	rm -rf .localdev .pytest_cache .mypy_cache .ruff_cache
