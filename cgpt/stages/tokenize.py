"""Stage tokenize: ``data/clean/`` -> ``data/tokens/`` (tokenizer.json, token shards, index.json)."""

from __future__ import annotations

import time
from typing import Any

from cgpt.data.tokenize.pack import tokenize_corpus
from cgpt.project import Project
from cgpt.stages.data_stats import publish_data_stats


def run(project: Project) -> dict[str, Any]:
    params = project.params()
    started = time.time()
    stats = tokenize_corpus(params.tokenize, project.clean, project.tokens)
    publish_data_stats(project, params, "tokenize", stats, started=started)
    return stats
