"""The GPT-3-style decoder (SP and muP)."""

from cgpt.model.gpt import GPT

__all__ = ["GPT"]
