"""A run at a glance (``cgpt summary``, the Prefect artifact): a short table built from the metrics files.

Everything comes from files the stages wrote (``metrics/*.json``, ``runs/<name>/*.json``), so the
summary is the same whichever tool ran the pipeline. Wall time and tokens/s are over the whole
training, every session of a resumed run included, and a resumed run says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cgpt.config import load_params
from cgpt.core.fsutil import read_json_if_valid
from cgpt.core.project import Project


def _read(path: Path) -> dict[str, Any]:
    obj = read_json_if_valid(path)
    return obj if isinstance(obj, dict) else {}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _millions(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


def summary_rows(project: Project) -> list[tuple[str, str]]:
    """(label, text) rows; rows whose stage has not run yet are left out."""
    params = load_params(project.params_file)
    run = project.run_dir(params.train.run_name)
    clean, tok = _read(project.metrics / "clean.json"), _read(project.metrics / "tokenize.json")
    train, timing = _read(run / "train_metrics.json"), _read(run / "timing.json")
    ev, ex = _read(run / "eval" / "upstream.json"), _read(run / "export_metrics.json")
    rows: list[tuple[str, str]] = []
    model = f"{params.train.run_name} ({params.model.preset}"
    n_params = _read(run / "model" / "cgpt_model.json").get("params")
    if n_params:
        model += f", {_millions(n_params)} params"
    rows.append(("model", model + ")"))
    if clean or tok:
        parts = []
        if clean:
            t = clean["total"]
            parts.append(f"{t['documents_out']:,} of {t['documents_in']:,} documents kept")
        if tok:
            toks = tok["tokens"]
            parts.append(
                f"tokens train {_millions(toks['train'])} / val {_millions(toks['val'])} / "
                f"test {_millions(toks['test'])}, vocab {tok['vocab_size']:,}"
            )
        rows.append(("data", "; ".join(parts)))
    if train:
        text = f"{train['steps']:,} steps, {_millions(train['tokens_seen'])} tokens"
        if timing:
            text += f", {_duration(timing.get('seconds', 0.0))}, {timing.get('tokens_per_s', 0.0):,.0f} tokens/s"
            if timing.get("mfu"):
                text += f", MFU {timing['mfu']:.1%}"
            if timing.get("world_size", 1) > 1:
                text += f" on {timing['world_size']} ranks ({timing.get('strategy')})"
            if timing.get("resumed_from_step"):
                text += f" (resumed at step {timing['resumed_from_step']:,}; time and speed cover every session)"
        rows.append(("training", text))
    losses = []
    if train.get("train_loss") is not None:
        losses.append(f"train {train['train_loss']:.3f}")
    for split in ("val", "test"):
        if split in ev and isinstance(ev[split], dict) and ev[split].get("loss") is not None:
            losses.append(f"{split} {ev[split]['loss']:.3f} (ppl {ev[split]['perplexity']:.1f})")
    if losses:
        rows.append(("loss", ", ".join(losses) + " nats/token"))
    for shots in (0, 5):  # the card's mean over its 7 tasks; the tasks one by one when some were left out
        row = _read(run / f"eval_{shots}shot_acc.json")
        if row.get("avg") is not None:
            rows.append((f"{shots}-shot acc", f"{row['avg']:.3f} (mean of the card's 7 tasks)"))
        elif row:
            rows.append((f"{shots}-shot acc", ", ".join(f"{k} {v:.3f}" for k, v in row.items())))
    if ex:
        rows.append(("export", f"{run / 'hf'} (max |logit diff| vs cgpt {ex['max_abs_logit_diff']:.1e})"))
    sample = run / "sample.txt"
    if sample.is_file():
        rows.append(("sample", repr(sample.read_text(encoding="utf-8").strip())))
    return rows


def format_summary(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {text}" for label, text in rows)


def summary_markdown(rows: list[tuple[str, str]]) -> str:
    """The same rows as a two-column markdown table (the Prefect artifact)."""
    body = "\n".join(f"| {label} | {text.replace('|', '/')} |" for label, text in rows)
    return f"| | |\n|---|---|\n{body}"
