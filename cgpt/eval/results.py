"""Downstream results: per task and shot count, with every document's loglikelihoods kept for comparison."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cgpt.core.fsutil import write_json_atomic, write_text_atomic


@dataclass
class DocResult:
    """One document: its gold index (None for LAMBADA), one (ll, is_greedy) per request, its metrics."""

    doc_index: int
    gold: int | None
    loglikelihoods: list[float]
    is_greedy: list[bool]
    acc: float
    acc_norm: float | None = None
    requests: list[tuple[str, str]] | None = None  # (context, continuation), kept on request

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if self.requests is None:
            d.pop("requests")
        return d


@dataclass
class TaskResult:
    """A task at one shot count. ``acc`` is the card's metric; ``acc_norm`` where the task defines it.

    ``fewshot_pool`` differs from the task's few-shot split only when that split could not be had
    and the task's fallback was used (:attr:`cgpt.eval.tasks.Task.fewshot_fallback`): such a
    result is what the harness computes with the task's training split removed, not its stock
    k-shot number, and the table prints a note under it (:func:`cgpt.eval.table.table_notes`).
    """

    task: str
    num_fewshot: int
    n_docs: int
    acc: float
    acc_stderr: float | None
    acc_norm: float | None = None
    acc_norm_stderr: float | None = None
    perplexity: float | None = None
    perplexity_stderr: float | None = None
    n_requests: int = 0
    seconds: float = 0.0
    # The split the shots were drawn from (None at 0 shots); a fallback reads "validation (train split unavailable)".
    fewshot_pool: str | None = None
    docs: list[DocResult] = field(default_factory=list, repr=False)

    @property
    def key(self) -> str:
        return f"{self.task}/{self.num_fewshot}shot"

    def metrics(self) -> dict[str, float]:
        """The numeric summary (no per-document records), e.g. for MLflow or DVC metrics."""
        names = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "perplexity", "perplexity_stderr")
        out = {k: float(getattr(self, k)) for k in names if getattr(self, k) is not None}
        out["n_docs"] = float(self.n_docs)
        return out

    def summary_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("docs")
        return d


@dataclass
class EvalResults:
    """Everything one evaluation run produced."""

    model: str
    tasks: list[TaskResult]
    settings: dict[str, Any] = field(default_factory=dict)

    def get(self, task: str, num_fewshot: int) -> TaskResult | None:
        for r in self.tasks:
            if r.task == task and r.num_fewshot == num_fewshot:
                return r
        return None

    def shots(self) -> list[int]:
        return sorted({r.num_fewshot for r in self.tasks})

    def summary_json(self, timings: bool = True) -> dict[str, Any]:
        """``timings=False`` leaves out the seconds each task took, so the same model gives the same bytes."""
        rows = [r.summary_json() for r in self.tasks]
        if not timings:
            rows = [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
        return {"model": self.model, "settings": self.settings, "results": rows}

    def flat_metrics(self, prefix: str = "downstream") -> dict[str, float]:
        """``{"<prefix>.<task>.<k>shot.<metric>": value}`` for every task and shot count (MLflow, DVC metrics)."""
        return {f"{prefix}.{r.task}.{r.num_fewshot}shot.{k}": v for r in self.tasks for k, v in r.metrics().items()}

    def save(self, out_dir: Path, timings: bool = True) -> None:
        """``results.json`` (summary) and ``samples/<task>_<k>shot.jsonl`` (one line per document)."""
        out_dir = Path(out_dir)
        write_json_atomic(out_dir / "results.json", self.summary_json(timings))
        for r in self.tasks:
            lines = "".join(json.dumps(d.to_json(), ensure_ascii=False) + "\n" for d in r.docs)
            write_text_atomic(out_dir / "samples" / f"{r.task}_{r.num_fewshot}shot.jsonl", lines)
