# The two commands a new user needs:  make demo  and  make test
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-versions dist lint bench clean

$(STAMP): pyproject.toml scripts/bootstrap-venv
	./scripts/bootstrap-venv $(VENV) test,bench
	@touch $@

## make demo: fake API on loopback, then the client, llm and the exporter against it
demo: $(STAMP)
	$(PY) scripts/demo.py

## make test: lint, then the whole test suite (unit + loopback integration, packaging,
## the container image with podman, compose, Kubernetes and systemd checks)
test: $(STAMP)
	$(VENV)/bin/ruff check . .ci/test-versions
	$(PY) -m pytest

## make test-versions: the fast part of the suite on the oldest Python with every
## dependency at its floor (llm 0.26, ...), and on the newest Python with the newest
test-versions: $(STAMP)
	$(PY) .ci/test-versions

## make dist: the sdist and the wheel in dist/, checked with twine
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*

lint: $(STAMP)
	$(VENV)/bin/ruff check . .ci/test-versions
	$(VENV)/bin/ruff format --check llm_pinference exporter

bench: $(STAMP)
	$(PY) bench/run_all.py

## make mutation: mutation testing (mutmut) of the core, the exporter's state, collector and
## prober, and the alert rules' thresholds; not part of make test; about 40 minutes on 2 cores.
## Some targets only: make mutation MUTATE="llm_pinference/core/text.py rules"
.PHONY: mutation
MUTATION_STAMP := $(VENV)/.mutation-installed
$(MUTATION_STAMP): $(STAMP)
	./scripts/bootstrap-venv $(VENV) test,bench,mutation
	@touch $@

mutation: $(MUTATION_STAMP)
	$(PY) scripts/mutation.py $(MUTATE)

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
