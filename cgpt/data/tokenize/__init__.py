"""tokenize: byte-level BPE, seeded split, packing, data/clean/ -> data/tokens/ (see pack.py)."""
