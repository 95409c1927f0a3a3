"""Model registry and run tracking: the only part of the core that talks to MLflow (imported lazily)."""
