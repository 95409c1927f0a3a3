"""The artifact layer (platform adapter, ``aigp.registry``): the MLflow model registry and run tracking, and
artifact storage (local paths, ``file://`` and ``s3://`` through boto3).

The core (``aigp/``) imports none of this: it works on local paths and is handed trackers and paths by the
composition root (the CLI, the KFP components, serving). ``storage.localize`` is the one way to turn a model URI
into a local path; ``model_registry.DEFAULT_MODEL_NAME`` is the one model name.
"""
