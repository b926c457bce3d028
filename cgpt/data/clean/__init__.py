"""clean: ftfy NFC + filters + optional dedup, data/raw/ -> data/clean/ (see cleaner.py, parts.py)."""
