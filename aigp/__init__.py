"""AIGP: LLM-based e-commerce pricing aligned with long-term value, as a Kubeflow/KServe platform."""

__version__ = "0.1.0"
