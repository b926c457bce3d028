"""Thin DVC entry points, one per stage: `python -m stages.<name>` from the project root."""
