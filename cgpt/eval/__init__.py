"""Evaluation: upstream cross-entropy over whole splits; its params section: params.py."""
