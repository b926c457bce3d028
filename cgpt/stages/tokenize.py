"""Stage tokenize: ``data/clean/`` -> ``data/tokens/`` (tokenizer.json, token shards, index.json)."""

from __future__ import annotations

import time
from typing import Any

from cgpt.core.project import Project
from cgpt.core.sections import Sections
from cgpt.data.tokenize.pack import tokenize_corpus
from cgpt.data.tokenize.params import TokenizeParams
from cgpt.stages.data_stats import publish_data_stats
from cgpt.tracking.params import TrackingParams


class StageParams(Sections):
    """What the tokenize stage reads of params.yaml."""

    tokenize: TokenizeParams = TokenizeParams()
    tracking: TrackingParams = TrackingParams()


def run(project: Project) -> dict[str, Any]:
    params = project.load(StageParams)
    started = time.time()
    stats = tokenize_corpus(params.tokenize, project.clean, project.tokens)
    publish_data_stats(project, params, "tokenize", stats, started=started)
    return stats
