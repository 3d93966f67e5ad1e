# Every target creates the virtual environment on first use. `make help` lists them.
VENV       ?= .venv
PY         := $(VENV)/bin/python
# torch is installed first and pinned: on a CPU-only machine with a local wheel
# this stays fast; on PyPI the Linux wheel of this version carries CUDA. Override
# for another build, e.g. make run TORCH_SPEC="torch==2.13.0 --index-url <wheel index>"
TORCH_SPEC ?= torch==2.13.0
PARAMS     ?= params.yaml

.PHONY: help run test test-fast bench clean
help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev,scale]'
	touch $@

run: $(VENV)/.installed  ## run the whole study on params.yaml (Prefect flow)
	$(VENV)/bin/neural-trader run --params $(PARAMS)

test: $(VENV)/.installed  ## the full test suite, slow tiers included (what CI runs)
	$(PY) -m pytest

test-fast: $(VENV)/.installed  ## every tier but the tests marked slow
	$(PY) -m pytest -m "not slow"

bench: $(VENV)/.installed  ## training speed: the seed's loop vs ours, ratios side by side
	$(PY) benchmarks/train_speed.py

clean:  ## remove the virtual environment
	rm -rf $(VENV)
