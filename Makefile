# The two commands a new user needs:  make demo  and  make test
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml scripts/bootstrap-venv
	./scripts/bootstrap-venv $(VENV) test,bench
	@touch $@

## make demo: fake API on loopback, then the client, llm and the exporter against it
demo: $(STAMP)
	$(PY) scripts/demo.py

## make test: lint, then the whole test suite (unit + loopback integration)
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check llm_pinference exporter

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
