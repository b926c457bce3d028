"""The data stages' rooms, in the order data walks through them.

* :mod:`cgpt.data.download` - sources (built-in, local, http with resume) -> ``data/raw/`` + manifest
* :mod:`cgpt.data.clean` - ftfy + filters, exact/near dedup, shard merge -> ``data/clean/``
* :mod:`cgpt.data.tokenize` - tokenizer (GPT-2 or trained), split, packing, shard merge -> ``data/tokens/``
* :mod:`cgpt.data.tokens` - the token-file format (header, writer, index, zero-copy reader)
* :mod:`cgpt.data.formats` - streaming readers of the raw corpus formats (txt, jsonl[.zst|.gz], parquet)
* :mod:`cgpt.data.shards` - shard planning and bookkeeping for the clean/tokenize fan-out
"""
