# Two commands on a fresh machine: `make demo` and `make test`.
#
# Everything runs in a virtual environment of its own, .venv: a distribution's
# Python (Debian 12 and later) refuses `pip install` outside one (PEP 668,
# "externally-managed-environment"). Every tool is run as `$(PYTHON) -m …`, so
# nothing depends on PATH. `make test PYTHON=/path/to/python` uses that
# interpreter as it is instead (no .venv).
VENV := .venv
PYTHON ?= $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

ifeq ($(PYTHON),$(VENV)/bin/python)
# Installs are remembered (stamps in .venv) and redone when pyproject.toml changes.
install: $(VENV)/.installed-test
install-demo: $(VENV)/.installed-demo
else
install:
	$(PYTHON) -m pip install -q -e '.[test]'
install-demo:
	$(PYTHON) -m pip install -q -e .
endif

.PHONY: install install-demo demo test lint unit bench

# --system-site-packages: packages the distribution already ships (python3-yaml, …) are reused.
$(VENV)/bin/python:
	python3 -m venv --system-site-packages $(VENV)

# The test extra: pytest, ruff, mypy, import-linter, hypothesis, the operator's kopf.
$(VENV)/.installed-test: pyproject.toml $(VENV)/bin/python
	$(PYTHON) -m pip install -q -e '.[test]'
	touch $@

# The demo needs only baseguard itself (aiohttp, cryptography, …): no test tools, no kopf.
$(VENV)/.installed-demo: pyproject.toml $(VENV)/bin/python
	$(PYTHON) -m pip install -q -e .
	touch $@

# Options: DEMO_EXIT=1 make demo  sends the sample reviews and stops (no waiting for Ctrl-C).
demo: install-demo
	$(PYTHON) demo/run.py

lint: install
	$(PYTHON) -m ruff check controller tests bench
	$(PYTHON) -m mypy
	$(PYTHON) -c 'from importlinter.cli import lint_imports_command; lint_imports_command()'

unit: install
	$(PYTHON) -m pytest -q

test: install lint unit
	$(PYTHON) policies/eol/generate.py --check
	$(PYTHON) scripts/sync_crds.py --check
	$(PYTHON) scripts/gen_docs.py --check
	$(PYTHON) -m controller policy validate policies/ > /dev/null
	$(PYTHON) -m controller test policies/

bench: install
	$(PYTHON) bench/registry.py
	$(PYTHON) bench/provenance.py
	$(PYTHON) bench/webhook.py
	$(PYTHON) bench/policies.py
	$(PYTHON) bench/hostile.py
	$(PYTHON) bench/soak.py
