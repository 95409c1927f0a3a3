"""The KServe ``InferenceService`` of a registered model version, and deploying it.

``render_inference_service`` builds the LLM predictor's InferenceService: the Hugging Face runtime with the
vLLM backend (ServingRuntime ``aigp-vllm`` in ``manifests/base/serving``), the version's storage URI, an
explicit ``--max-model-len``, GPU requests/limits and, optionally, a LoRA adapter served next to the base
weights. ``deploy`` applies it with the Kubernetes Python client when a cluster is configured (in-cluster
service account or a kubeconfig) and always writes the YAML, so a person can read what was (or would be)
applied. ``manifests/base/serving/inferenceservice-llm.yaml`` is this function's output for the defaults
(a test keeps the two identical).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from aigp.config import StrictConfig
from aigp.io import write_text
from aigp.pricing import DEFAULT_MODEL_NAME

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
KSERVE_PLURAL = "inferenceservices"
MODEL_MOUNT = "/mnt/models"  # where KServe's storage initializer puts storageUri
CLUSTER_SCHEMES = ("s3://", "gs://", "pvc://", "hf://", "https://", "oci://")


class LLMServingConfig(StrictConfig):
    """How the LLM predictor is served (every default is the production base manifest's)."""

    name: str = Field("aigp-llm", description="InferenceService name; the transformer calls <name>-predictor")
    namespace: str | None = Field(None, description="Kubernetes namespace; None = the kubeconfig's / overlay's")
    runtime: str = Field("aigp-vllm", description="ServingRuntime (Hugging Face server, vLLM backend)")
    served_model_name: str = Field(DEFAULT_MODEL_NAME, description="model name on the OpenAI-compatible routes")
    max_model_len: int = Field(4096, ge=256, le=262144, description="vLLM --max-model-len (prompt + completion)")
    gpus: int = Field(1, ge=1, le=16, description="nvidia.com/gpu request = limit (vLLM tensor parallel size)")
    gpu_memory_utilization: float = Field(0.9, gt=0.1, le=0.98, description="vLLM --gpu-memory-utilization")
    dtype: str = Field("auto", pattern=r"^(auto|bfloat16|float16|float32)$", description="vLLM --dtype")
    cpu_request: str = Field("4", description="CPU request of the predictor container")
    memory_request: str = Field("32Gi", description="memory request")
    cpu_limit: str = Field("8", description="CPU limit")
    memory_limit: str = Field("48Gi", description="memory limit")
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    service_account: str = Field("aigp-serving", description="carries the S3 secret for the storage initializer")
    lora_adapter: str | None = Field(None, description="adapter folder inside the model directory, e.g. 'adapter'")
    max_lora_rank: int = Field(16, ge=1, le=512, description="vLLM --max-lora-rank when a LoRA adapter is served")


def predictor_args(cfg: LLMServingConfig) -> list[str]:
    args = [
        f"--model_name={cfg.served_model_name}",
        "--backend=vllm",
        f"--max-model-len={cfg.max_model_len}",
        f"--gpu-memory-utilization={cfg.gpu_memory_utilization}",
        f"--dtype={cfg.dtype}",
    ]
    if cfg.gpus > 1:
        args.append(f"--tensor-parallel-size={cfg.gpus}")
    if cfg.lora_adapter:
        adapter = cfg.lora_adapter.strip("/")
        if not adapter or ".." in adapter.split("/"):
            raise ValueError(f"lora_adapter={cfg.lora_adapter!r}: expected a folder inside the model directory")
        args += ["--enable-lora", f"--lora-modules={cfg.served_model_name}-lora={MODEL_MOUNT}/{adapter}",
                 f"--max-lora-rank={cfg.max_lora_rank}"]
    return args


def render_inference_service(storage_uri: str, cfg: LLMServingConfig | None = None, *,
                             model_name: str = DEFAULT_MODEL_NAME, model_version: int | None = None) -> dict[str, Any]:
    """The InferenceService for one model version as a plain dict (what ``kubectl apply`` would get)."""
    cfg = cfg or LLMServingConfig()
    if cfg.max_replicas < cfg.min_replicas:
        raise ValueError(f"max_replicas={cfg.max_replicas} is below min_replicas={cfg.min_replicas}")
    if not storage_uri:
        raise ValueError("storage_uri is empty")
    labels = {"app.kubernetes.io/name": cfg.name, "app.kubernetes.io/component": "llm-predictor",
              "aigp.io/model-name": model_name}
    if model_version is not None:
        labels["aigp.io/model-version"] = str(model_version)
    metadata: dict[str, Any] = {
        "name": cfg.name,
        "labels": labels,
        # Raw deployment: a GPU pod with minutes of model load must not scale to zero under Knative.
        "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
    }
    if cfg.namespace:
        metadata["namespace"] = cfg.namespace
    gpu = str(cfg.gpus)
    return {
        "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {
            "predictor": {
                "serviceAccountName": cfg.service_account,
                "minReplicas": cfg.min_replicas,
                "maxReplicas": cfg.max_replicas,
                "model": {
                    "modelFormat": {"name": "huggingface"},
                    "runtime": cfg.runtime,
                    "storageUri": storage_uri,
                    "args": predictor_args(cfg),
                    "resources": {
                        "requests": {"cpu": cfg.cpu_request, "memory": cfg.memory_request, "nvidia.com/gpu": gpu},
                        "limits": {"cpu": cfg.cpu_limit, "memory": cfg.memory_limit, "nvidia.com/gpu": gpu},
                    },
                },
            }
        },
    }


def to_yaml(manifest: dict[str, Any]) -> str:
    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False)


def kube_api_from_environment() -> Any | None:
    """A ``CustomObjectsApi`` when a cluster is configured (in-cluster, or a kubeconfig file), else ``None``."""
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if not in_cluster and not any(Path(p).is_file() for p in kubeconfig.split(os.pathsep) if p):
        return None
    from kubernetes import client, config

    if in_cluster:
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.CustomObjectsApi()


@dataclass(frozen=True)
class DeployResult:
    path: Path          # the YAML written (always)
    applied: bool       # sent to a cluster
    action: str         # "created" | "replaced" | "written"
    message: str


def apply_inference_service(manifest: dict[str, Any], api: Any, namespace: str) -> str:
    """Create the InferenceService, or replace the existing one (keeping its resourceVersion)."""
    from kubernetes.client.exceptions import ApiException

    name = manifest["metadata"]["name"]
    try:
        existing = api.get_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        api.create_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, manifest)
        return "created"
    body = {**manifest, "metadata": {**manifest["metadata"],
                                     "resourceVersion": existing["metadata"]["resourceVersion"]}}
    api.replace_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace, KSERVE_PLURAL, name, body)
    return "replaced"


def deploy(manifest: dict[str, Any], out: str | os.PathLike[str], api: Any = None, *,
           use_cluster: bool | None = None, namespace: str | None = None) -> DeployResult:
    """Write ``manifest`` to ``out`` and apply it when a cluster is configured.

    ``use_cluster``: True = must apply (error without a cluster), False = only write, None = apply when a
    cluster is configured. ``api`` is a ``CustomObjectsApi`` (found from the environment when omitted).
    """
    path = write_text(Path(out), to_yaml(manifest))
    if use_cluster is False:
        return DeployResult(path, False, "written", f"wrote {path} (not applied: --no-apply)")
    api = api if api is not None else kube_api_from_environment()
    if api is None:
        if use_cluster:
            raise ValueError("--apply was given but no cluster is configured (no in-cluster service account, "
                             "no kubeconfig at $KUBECONFIG or ~/.kube/config)")
        return DeployResult(path, False, "written",
                            f"no Kubernetes cluster configured: wrote {path}; apply it with kubectl apply -f {path}")
    uri = manifest["spec"]["predictor"]["model"]["storageUri"]
    if not uri.startswith(CLUSTER_SCHEMES):
        raise ValueError(f"storageUri {uri!r} is a local path a cluster cannot pull; publish the model to S3 first "
                         "(aigp registry promote --publish-to s3://bucket/prefix) or use an S3 MLflow artifact root")
    ns = namespace or manifest["metadata"].get("namespace") or "default"
    action = apply_inference_service(manifest, api, ns)
    return DeployResult(path, True, action, f"{action} InferenceService {ns}/{manifest['metadata']['name']}; "
                                           f"manifest written to {path}")


def publish_model(storage_uri: str, prefix: str, model_name: str, version: int, client: Any = None) -> str:
    """Copy a version's model directory to ``<prefix>/<model_name>/v<version>`` on S3 (where the cluster's
    storage initializer can pull it); returns that URI. Already-S3 URIs under a different prefix are
    downloaded (cached) and re-uploaded."""
    from aigp.registry import storage

    target = f"{prefix.rstrip('/')}/{model_name}/v{version}"
    storage.parse_s3_uri(target)
    local = storage.resolve_local(storage_uri, client=client)
    storage.upload(local, target, client=client)
    return target
