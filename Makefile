# The two commands: `make demo` and `make test`. Both create the virtualenv and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export DO_NOT_TRACK := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test bench lint venv system-deps clean evaluate

venv: $(STAMP)

# torch first, pinned: a plain `torch` requirement with no torch installed pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[all]"
	touch $(STAMP)

# Services the tests start themselves (a real redis-server on loopback).
system-deps:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null; fi; }

demo: venv
	$(VENV)/bin/aigp demo

test: venv system-deps
	$(PY) -m pytest -q

bench: venv system-deps
	$(PY) -m bench.run_all

# The paper's evaluation on the simulator (Tables 2-5, 7, Fig. 3-5): EVALUATION.md + EVALUATION.html.
evaluate: venv
	$(VENV)/bin/aigp evaluate --out EVALUATION.md

lint: venv
	$(VENV)/bin/ruff check aigp components pipelines serving monitoring feature_repo bench tests
	$(VENV)/bin/mypy aigp

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
