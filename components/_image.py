"""The container images the pipeline steps run in, by registry and tag.

``platform``: the project image (``Dockerfile``, CPU torch): every lightweight step. ``cuda``: the same
project built on CUDA torch (``make image``: ``--build-arg TORCH_INDEX_URL=<a CUDA wheel index>``): the GPU
steps (SFT, candidate sampling, DPO). Another registry or tag is a compile/submit option
(``aigp pipeline compile --registry R --tag T``), which sets every step's image in the compiled IR.
"""

from dataclasses import dataclass

REGISTRY = "registry.local"
TAG = "0.1.0"
PLATFORM_REPOSITORY = "aigp/platform"
CUDA_REPOSITORY = "aigp/platform-cuda"


@dataclass(frozen=True)
class Images:
    platform: str
    cuda: str

    @classmethod
    def of(cls, registry: str = REGISTRY, tag: str = TAG) -> "Images":
        registry, tag = registry.strip().rstrip("/"), tag.strip()
        if not registry or "://" in registry or any(c.isspace() for c in registry):
            raise ValueError(f"registry={registry!r}: expected a registry host[:port][/path], e.g. {REGISTRY}")
        if not tag or ":" in tag or "/" in tag or any(c.isspace() for c in tag):
            raise ValueError(f"tag={tag!r}: expected an image tag, e.g. {TAG}")
        return cls(platform=f"{registry}/{PLATFORM_REPOSITORY}:{tag}", cuda=f"{registry}/{CUDA_REPOSITORY}:{tag}")


DEFAULT_IMAGES = Images.of()
# The component decorators' base image (what kfp.local and a step without a cluster override see).
AIGP_IMAGE = DEFAULT_IMAGES.platform
