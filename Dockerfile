# The project image: every KFP component, the pricing transformer, the Feast feature server, the monitoring
# CronJob and the nightly-run job run in it (components/_image.py). Build and push with `make image` and
# `make image-push` (REGISTRY=..., IMAGE_TAG=...), which run:
#   docker build -t registry.local/aigp/platform:0.1.0 --build-arg GIT_SHA=$(git rev-parse HEAD) .
# and the CUDA build of the same project for the GPU pipeline steps (SFT, DPO, candidate sampling):
#   docker build -t registry.local/aigp/platform-cuda:0.1.0 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 --build-arg GIT_SHA=$(git rev-parse HEAD) .
# Dependencies come from requirements.lock (make lock), torch first at the Makefile's TORCH_VERSION.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
# CPU wheels by default; pass a CUDA index (cu126, cu128, ...) for GPU training images.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG GIT_SHA=unknown

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    DO_NOT_TRACK=1 \
    MLFLOW_ENABLE_TELEMETRY=false \
    TOKENIZERS_PARALLELISM=false \
    AIGP_CODE_VERSION=${GIT_SHA} \
    HOME=/home/aigp

# git: MLflow records the code version; tini: signals reach the server processes (KServe, Feast).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git tini \
    && rm -rf /var/lib/apt/lists/*

# torch first, pinned, from the chosen index: a plain `torch` requirement would pull a multi-GB CUDA build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /app
COPY . /app
# Non-editable install: the aigp console script (aigp monitor run, aigp registry ...), feast and kfp CLIs, every
# dependency at its version in the lock (-c: the lock constrains, the extras choose what is installed).
RUN pip install -c requirements.lock ".[train,serve,mlops]" \
    && useradd --create-home --home-dir /home/aigp --uid 10001 --user-group aigp \
    && mkdir -p /app/runs && chown -R aigp:aigp /app/runs

USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["tini", "--"]
CMD ["aigp", "--help"]
