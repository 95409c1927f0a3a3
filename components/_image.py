"""The container image every lightweight component runs in (the project image: `pip install aigp[all]`)."""

import os

AIGP_IMAGE = os.environ.get("AIGP_IMAGE", "registry.local/aigp/platform:0.1.0")
