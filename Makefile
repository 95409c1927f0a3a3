# The two commands: `make demo` and `make test`. Both create the virtualenv and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
UV := $(VENV)/bin/uv
# torch is pinned here and installed first (a plain `torch` pulls a multi-GB CUDA build); the lock carries
# everything else. uv resolves and installs the lock; its own version is pinned beside torch's.
TORCH_VERSION := 2.13.0
UV_VERSION := 0.13.9
LOCK := requirements.lock
# Where `make lock` finds the CPU torch wheel, so the lock carries CPU torch's dependencies (no CUDA
# libraries): a folder or a find-links page (PyTorch's CPU wheel index elsewhere).
TORCH_WHEELS ?= /opt/wheels
export HF_HUB_OFFLINE := 1
export DO_NOT_TRACK := 1
export TOKENIZERS_PARALLELISM := false

# Container images (docker, or DOCKER=podman): the project image, its CUDA build for the GPU pipeline steps,
# and the vLLM serving image. The pipelines compile for the same REGISTRY and IMAGE_TAG (make pipelines).
REGISTRY ?= registry.local
IMAGE_TAG ?= 0.1.0
DOCKER ?= docker
CUDA_TORCH_INDEX ?= https://download.pytorch.org/whl/cu128
GIT_SHA ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
PLATFORM_IMAGE = $(REGISTRY)/aigp/platform:$(IMAGE_TAG)
CUDA_IMAGE = $(REGISTRY)/aigp/platform-cuda:$(IMAGE_TAG)
SERVING_GPU_IMAGE = $(REGISTRY)/aigp/serving-gpu:$(IMAGE_TAG)
# Where `make pipelines` writes the IR compiled for those images (the committed IR holds the defaults).
PIPELINES_OUT ?= runs/pipelines

.PHONY: demo test bench lint lock venv system-deps clean evaluate image image-push pipelines

venv: $(STAMP)

# One pinned set of packages for every machine: torch first, then the lock, then the project without deps.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==$(TORCH_VERSION) uv==$(UV_VERSION)
	$(UV) pip install -q --python $(PY) -r $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $(STAMP)

# Regenerate the lock from pyproject.toml (every extra but gpu). torch is resolved from the CPU wheel but
# not emitted: it is installed first, pinned by TORCH_VERSION (tests/test_lock.py checks they agree).
# The CUDA image installs a CUDA torch of the same version first; the lock's other pins apply unchanged.
lock:
	test -x $(UV) || { test -x $(PY) || $(PYTHON) -m venv $(VENV); $(PIP) install -q uv==$(UV_VERSION); }
	echo "torch==$(TORCH_VERSION)+cpu" > $(VENV)/torch-pin.txt
	$(UV) pip compile pyproject.toml --extra all --override $(VENV)/torch-pin.txt --no-emit-package torch --find-links $(TORCH_WHEELS) \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" \
	  --quiet -o $(LOCK)

# Tools the tests run themselves: a real redis-server on loopback, Prometheus' promtool (Debian package
# prometheus) for the metrics lint and the alert rules' unit tests, a real Pushgateway on loopback.
system-deps:
	@for pair in redis-server:redis-server promtool:prometheus prometheus-pushgateway:prometheus-pushgateway; do \
	  command -v $${pair%%:*} >/dev/null && continue; \
	  echo "installing $${pair%%:*} (Debian package $${pair##*:})"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq $${pair##*:} >/dev/null || exit 1; \
	done

image:
	$(DOCKER) build -t $(PLATFORM_IMAGE) --build-arg TORCH_VERSION=$(TORCH_VERSION) --build-arg GIT_SHA=$(GIT_SHA) .
	$(DOCKER) build -t $(CUDA_IMAGE) --build-arg TORCH_VERSION=$(TORCH_VERSION) \
	  --build-arg TORCH_INDEX_URL=$(CUDA_TORCH_INDEX) --build-arg GIT_SHA=$(GIT_SHA) .
	$(DOCKER) build -f serving/Dockerfile.gpu -t $(SERVING_GPU_IMAGE) .

image-push: image
	$(DOCKER) push $(PLATFORM_IMAGE)
	$(DOCKER) push $(CUDA_IMAGE)
	$(DOCKER) push $(SERVING_GPU_IMAGE)

# The pipelines' IR for REGISTRY/IMAGE_TAG (submit it, or `aigp pipeline submit --registry R --tag T`).
pipelines: venv
	$(VENV)/bin/aigp pipeline compile --registry $(REGISTRY) --tag $(IMAGE_TAG) --out $(PIPELINES_OUT)

demo: venv
	$(VENV)/bin/aigp demo

test: venv system-deps
	$(PY) -m pytest -q

bench: venv system-deps
	$(PY) -m bench.run_all

# The paper's evaluation on the simulator (Tables 2-5, 7, Fig. 3-5): EVALUATION.md + EVALUATION.html.
evaluate: venv
	$(VENV)/bin/aigp evaluate --out EVALUATION.md

# Every top-level package: the core and the folders that map into it (components/ is aigp.components, ...).
LINT_PATHS := aigp components pipelines serving monitoring feature_repo registry evaluation bench tests

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy $(filter-out tests,$(LINT_PATHS))

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
