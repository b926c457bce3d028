"""download: sources (built-in, local, http with resume) -> data/raw/ + manifest.json (see raw.py)."""
