# Accord: `make demo` sets up and runs the demo; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1

.PHONY: demo test typecheck setup clean

setup: $(VENV)/.installed

# torch is installed on its own first, pinned, so that no dependency pulls a CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[all,test]"
	touch $@

demo: setup
	$(PY) -m examples.hospitals.run_demo

# The dashboard over the demo's runs (after `make demo`; one study per run folder), on 127.0.0.1 only; Ctrl-C stops it.
.PHONY: dashboard
dashboard: setup
	$(PY) -m federated.dashboard --output demo/output/runs --pack demo/evidence.zip --coordinator-key demo/output/coordinator.key.pub

# Static types first ([tool.mypy] in pyproject.toml: strict, the packages accord, crypto, privacy, federated).
typecheck: setup
	$(PY) -m mypy

test: setup typecheck
	$(PY) -m pytest

clean:
	rm -rf demo benchmarks/results .pytest_cache
