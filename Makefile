# dropscore: the commands the README promises.
# `make test` and `make demo` work on a fresh clone: they create .venv and run `npm ci` when needed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov pins dependencies the project venv cannot share: it gets its own venv (requirements-infra.txt).
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed

.PHONY: help install chromium test unit lint format typecheck check-infra demo demo-drift up down status doctor chaos bench clean

help:
	@echo "make demo   - run a CSV end to end on the local stack (Azurite + emulators + dev host)"
	@echo "make demo-drift - the demo, then a file from a shifted population: drift verdict and DropScore.DriftDetected"
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

# The browser tests (tests/e2e/test_dashboard.py) drive Debian's chromium through Playwright's Python API, never a
# browser Playwright downloads: installed here where it is missing and we can (root with apt-get); elsewhere those
# tests skip, saying why (under CI=true they fail instead).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "== installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium fonts-liberation >/dev/null; \
	  else \
	    echo "chromium is missing and cannot be installed here (needs root and apt-get): the browser tests will skip"; \
	  fi; }

install: $(STAMP) node_modules/.package-lock.json chromium

# actionlint checks .github/workflows (tests/unit/test_workflows.py runs it the same way). Every `run:` script goes
# through the venv's shellcheck, whatever is on PATH (so the result is the same everywhere); pyflakes is off (no
# `shell: python` step).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_import_rules.py
	$(VENV)/bin/actionlint -shellcheck=$(VENV)/bin/shellcheck -pyflakes=

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

demo-drift: install
	$(PY) -m localdev demo --drift

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
	$(PY) bench/list.py

clean:
	rm -rf .localdev .pytest_cache .mypy_cache .ruff_cache
