"""cgpt: the Cerebras-GPT recipe as a reproducible pipeline (DVC stages, Prefect flows, MLflow runs)."""

__version__ = "0.1.0"
