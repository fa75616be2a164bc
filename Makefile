# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo test lint unit bench

install:
	$(PYTHON) -m pip install -q -e '.[test]'

demo: install
	$(PYTHON) demo/run.py

lint:
	ruff check controller tests bench
	mypy
	lint-imports

unit:
	$(PYTHON) -m pytest -q

test: install lint unit
	$(PYTHON) policies/eol/generate.py --check
	$(PYTHON) scripts/sync_crds.py --check
	$(PYTHON) scripts/gen_docs.py --check
	baseguard policy validate policies/ > /dev/null
	baseguard test policies/

bench: install
	$(PYTHON) bench/registry.py
	$(PYTHON) bench/provenance.py
	$(PYTHON) bench/webhook.py
	$(PYTHON) bench/policies.py
	$(PYTHON) bench/soak.py
