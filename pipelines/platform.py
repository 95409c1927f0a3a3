"""What a pipeline step gets on a cluster, through kfp-kubernetes: its image, and its configuration from the
objects ``manifests/`` deploys in the namespace the pipelines run in.

- Image: the project image for every step, its CUDA build for the GPU steps (``aigp.components._image``).
  Pipelines are built for one set of images (:func:`building_with`); ``aigp pipeline compile|submit
  --registry R --tag T`` picks them.
- Configuration: every key of the ConfigMap ``aigp-config`` as an environment variable (``AWS_ENDPOINT_URL``,
  which only the local-dev overlay sets, optional); the Secret ``aigp-s3-credentials`` for the steps that read or
  write S3 (every MLflow step: the tracking server keeps artifacts in S3); ``REDIS_CONNECTION_STRING`` from the
  Secret ``aigp-redis`` for the steps that use the Redis online store.
- The GPU steps' shared cache: the PersistentVolumeClaim ``aigp-training-cache``
  (``manifests/base/pipelines/training-cache-pvc.yaml``), mounted by name.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from kfp import dsl, kubernetes

from aigp.components._image import DEFAULT_IMAGES, Images

CONFIG_MAP = "aigp-config"
# The keys of manifests/base/config/configmap.yaml (tests keep the two equal).
CONFIG_KEYS = ("AIGP_MODEL_NAME", "MLFLOW_TRACKING_URI", "AIGP_MLFLOW_ARTIFACTS", "AIGP_REGISTRY_AUDIT",
               "AIGP_FEAST_REGISTRY", "AIGP_OFFLINE_STORE", "AIGP_FEATURE_DATA", "AIGP_FEATURE_SERVER_URL",
               "AIGP_PREDICTOR_URL", "AIGP_DECISIONS_URI", "AIGP_MONITORING_URI", "AIGP_MONITOR_REFERENCE_URI",
               "KFP_ENDPOINT", "HF_HUB_OFFLINE", "DO_NOT_TRACK")
OPTIONAL_CONFIG_KEYS = ("AWS_ENDPOINT_URL",)  # an S3-compatible store in the cluster (local-dev: MinIO)
S3_SECRET = "aigp-s3-credentials"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
REDIS_SECRET = "aigp-redis"
REDIS_SECRET_ENV = {"connection-string": "REDIS_CONNECTION_STRING"}
MONITORING_CONFIG_MAP = "aigp-monitoring"  # manifests/base/monitoring/pushgateway.yaml: where gauges are pushed
MONITORING_CONFIG_KEYS = ("AIGP_PUSHGATEWAY_URL",)

_IMAGES: ContextVar[Images] = ContextVar("aigp_pipeline_images", default=DEFAULT_IMAGES)


@contextmanager
def building_with(images: Images) -> Iterator[Images]:
    """Pipelines decorated inside this block run their steps in ``images``."""
    token = _IMAGES.set(images)
    try:
        yield images
    finally:
        _IMAGES.reset(token)


def on_cluster(task: dsl.PipelineTask, *, gpu: bool = False, s3: bool = False,
               redis: bool = False, pushes_metrics: bool = False) -> dsl.PipelineTask:
    """``task`` in the project image (its CUDA build when ``gpu``) with aigp-config as environment, plus the S3
    credentials, the Redis connection string and the Pushgateway URL (aigp-monitoring) when it needs them."""
    images = _IMAGES.get()
    task.set_container_image(images.cuda if gpu else images.platform)
    kubernetes.use_config_map_as_env(task, CONFIG_MAP, {key: key for key in CONFIG_KEYS})
    kubernetes.use_config_map_as_env(task, CONFIG_MAP, {key: key for key in OPTIONAL_CONFIG_KEYS}, optional=True)
    if s3:
        kubernetes.use_secret_as_env(task, S3_SECRET, {key: key for key in S3_SECRET_KEYS})
    if redis:
        kubernetes.use_secret_as_env(task, REDIS_SECRET, dict(REDIS_SECRET_ENV))
    if pushes_metrics:
        kubernetes.use_config_map_as_env(task, MONITORING_CONFIG_MAP, {key: key for key in MONITORING_CONFIG_KEYS})
    return task
