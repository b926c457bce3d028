"""Stage export: ``runs/<run_name>/model`` -> ``runs/<run_name>/hf`` (GPT2LMHeadModel), checked with transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgpt.core.errors import DataError
from cgpt.core.fsutil import atomic_dir, read_json_if_valid, write_json_atomic, write_text_atomic
from cgpt.core.locks import writing
from cgpt.core.project import Project
from cgpt.data.clean.params import CleanParams
from cgpt.data.download.params import DownloadParams
from cgpt.data.tokenize.params import TokensSpec
from cgpt.data.tokens import open_split, read_index
from cgpt.export.hf import EXPORT_DTYPES, write_hf_files
from cgpt.export.license import license_text
from cgpt.export.model_card import CardFacts, model_card, project_url
from cgpt.export.params import ExportParams
from cgpt.export.verify import max_logit_difference, sample_text
from cgpt.faults import fault_point
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig
from cgpt.stages.data_stats import file_digest
from cgpt.tracking.params import TrackingParams
from cgpt.tracking.registry import log_hf_model
from cgpt.tracking.runs import RUN_FILE, finishing, open_model_run, provenance_tags, send_missing_curve
from cgpt.tracking.store import check_tracking
from cgpt.train.checkpoint import load_model_dir
from cgpt.train.params import TrainingSections
from cgpt.train.schedule import tokens_seen


class StageParams(TrainingSections):
    """What the export stage reads of params.yaml: ``export:``, ``tracking:``, the model and its
    recipe (the card), and for the card's data section the sources, the text fixing and dedup, and
    the tokenizer (dvc.yaml's params list exactly the keys the card uses)."""

    export: ExportParams = ExportParams()
    tracking: TrackingParams = TrackingParams()
    download: DownloadParams = DownloadParams()
    clean: CleanParams = CleanParams()
    tokenize: TokensSpec = TokensSpec()


def probe_tokens(tokens_dir: Path, n: int) -> np.ndarray:
    """The first ``n`` tokens of the val split (of train when val is empty): input for the export check."""
    for split in ("val", "train"):
        stream = open_split(tokens_dir, split)
        if len(stream) >= 2:
            return stream.read(0, min(len(stream), n))
    raise DataError(f"{tokens_dir}: the val and train splits are empty; rerun the tokenize stage")


def default_prompt(tokenizer_json: Path, probe: np.ndarray, words: int = 3) -> str:
    """The first few words of ``probe`` (the start of a document of this corpus) as the sample prompt."""
    from tokenizers import Tokenizer

    text = Tokenizer.from_file(str(tokenizer_json)).decode(probe[:32].tolist())
    return " ".join(text.split()[:words]) or text[:16]


def downstream_facts(summary: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[int, float]]:
    """The card's rows from ``eval/results.json``, and the 7-task mean acc per shot count (all seven present)."""
    from cgpt.published import TASKS

    rows = [
        {"task": r["task"], "shots": int(r["num_fewshot"]), "acc": r["acc"], "acc_norm": r.get("acc_norm"),
         "n": r.get("n_docs")}
        for r in summary.get("results", [])
    ]  # fmt: skip
    average: dict[int, float] = {}
    for shots in sorted({row["shots"] for row in rows}):
        accs = {row["task"]: row["acc"] for row in rows if row["shots"] == shots}
        if set(TASKS) <= set(accs):
            average[shots] = sum(accs[t] for t in TASKS) / len(TASKS)
    return rows, average


def eval_notes(summary: dict[str, Any]) -> list[str]:
    """The card's notes on its downstream table, from ``eval/results.json`` (what ``results.md`` notes too):
    the tasks the evaluation skipped (their data unavailable) and the results whose few-shot examples came
    from a fallback split (``fewshot_pool`` reads e.g. ``validation (train split unavailable)``)."""
    notes = []
    for row in summary.get("results", []):
        pool = row.get("fewshot_pool")
        if isinstance(pool, str) and " (" in pool:
            split, why = pool.split(" (", 1)
            notes.append(
                f"{row['task']} {row['num_fewshot']}-shot: the few-shot examples came from the {split} split "
                f"({why.rstrip(')')}), excluding the evaluated document; not lm-eval's stock "
                f"{row['num_fewshot']}-shot setting."
            )
    skipped = summary.get("settings", {}).get("skipped_tasks") or {}
    notes += [f"{task} was not evaluated: its data was unavailable ({why})." for task, why in skipped.items()]
    return notes


def trained_precision(info: dict[str, Any], configured: str) -> str:
    """What training ran in: the model folder's record (``fp32``, ``bf16``); ``train.precision`` when it is not
    ``auto``; else a plain statement that the record is missing (a model trained before it was recorded)."""
    if isinstance(info.get("precision"), str):
        return info["precision"]
    if configured != "auto":
        return configured
    return "not recorded (train.precision: auto; retrain to record it)"


def card_facts(
    project: Project, params: StageParams, cfg: ModelConfig, sample: str, info: dict[str, Any] | None = None
) -> CardFacts:
    """What the model card says, from the files the earlier stages wrote (``info``: the model folder's record)."""
    run_dir = project.run_dir(params.train.run_name)
    read = lambda path: read_json_if_valid(path) or {}  # noqa: E731
    clean, tok, train = (
        read(project.root / "metrics" / "clean.json"),  # one corpus: the clean stage's (a family member's too)
        read(project.metrics / "tokenize.json"),
        read(run_dir / "train_metrics.json"),
    )
    upstream = {
        split: {k: m[k] for k in ("loss", "perplexity", "tokens") if k in m}
        for split, m in read(run_dir / "eval" / "upstream.json").items()
        if isinstance(m, dict)
    }
    results = read(run_dir / "eval" / "results.json")
    downstream, average = downstream_facts(results)
    tp = params.tokenize.tokenizer
    tokenizer = (
        f"a byte-level BPE trained on the corpus, vocabulary {cfg.vocab_size:,}"
        if tp.kind == "train"
        else "GPT-2's byte-level BPE (OpenAI's vocab.json + merges.txt), vocabulary 50,257"
        if tp.kind == "gpt2"
        else "bytes: a byte-level BPE without merges (256 bytes + <|endoftext|>), vocabulary 257"
        if tp.kind == "bytes"
        else f"byte-level BPE loaded from {Path(tp.path or '').name or tp.path}"
    )
    c = params.clean
    cleaning = (
        (f"ftfy.fix_text(normalization={c.normalization!r})" if c.fix_text else "Unicode normalization only")
        + (", exact dedup" if c.dedup.exact else "")
        + (", near-duplicate removal (MinHash)" if c.dedup.near else "")
    )
    recipe = params.recipe()
    return CardFacts(
        name=params.train.run_name,
        preset=params.model.preset,
        model=cfg,
        recipe=recipe,
        tokens_seen=int(train.get("tokens_seen") or tokens_seen(recipe, recipe.optimizer_steps())),
        tokenizer=tokenizer,
        eos_token="<|endoftext|>",
        data={
            "sources": [f"`{s.name}` ({s.kind}{', ' + s.split if s.split else ''})" for s in params.download.sources],
            "cleaning": cleaning,
            "documents": clean.get("total", {}).get("documents_out", 0),
            "tokens": tok.get("tokens", {}),
        },
        precision=trained_precision(info or {}, params.train.precision),
        license=params.export.license,
        # relative: the card must not name this machine (a member's is family/runs/<name>/hf)
        folder=(project.run_dir(params.train.run_name) / "hf").relative_to(project.root).as_posix(),
        upstream=upstream,
        downstream=downstream,
        downstream_average=average,
        sample=sample,
        model_name=params.tracking.registered_model or "cgpt",
        project_url=project_url(),
        eval_notes=eval_notes(results),
    )


def run(project: Project, params: StageParams | None = None) -> dict[str, Any]:
    """``params``: the project's params.yaml unless given (a family member's derived params). Holds
    the run folder's lock (:mod:`cgpt.core.locks`) while it works."""
    params = params or project.load(StageParams)
    with writing(project.run_dir(params.train.run_name)):
        return _run(project, params)


def _run(project: Project, params: StageParams) -> dict[str, Any]:
    check_tracking(project.root, params.tracking)
    run_dir, tokens = project.run_dir(params.train.run_name), project.tokens
    cfg, state, info = load_model_dir(run_dir / "model")
    index = read_index(tokens)
    # Built in a temporary folder, checked, sampled and carded there, renamed into place last: a
    # kill at any point leaves the previous export (or none), never a half-made one.
    with atomic_dir(run_dir / "hf") as folder:
        write_hf_files(
            state,
            cfg,
            folder,
            tokenizer_json=tokens / "tokenizer.json",
            eos_token_id=int(index["eos_token_id"]),
            dtype=EXPORT_DTYPES[params.export.dtype],
        )
        fault_point("export.written")
        model = GPT(cfg)
        model.load_state_dict(state)
        probe = probe_tokens(tokens, 64)
        diff = max_logit_difference(folder, model, torch.from_numpy(probe).long().unsqueeze(0))
        prompt = params.export.sample_prompt
        if prompt is None:  # the opening words of real text from this corpus, not a fixed prompt
            prompt = default_prompt(tokens / "tokenizer.json", probe)
        text = sample_text(folder, prompt, params.export.sample_tokens) if params.export.sample_tokens else ""
        facts = card_facts(project, params, cfg, text, info)
        card = model_card(facts)
        (folder / "README.md").write_text(card, encoding="utf-8")
        licence = license_text(params.export.license, f"{facts.model_name}/{facts.name}")
        (folder / "LICENSE").write_text(licence, encoding="utf-8")
    hf_dir = run_dir / "hf"
    print(f"exported {hf_dir}: max |logit difference| vs cgpt = {diff:.2e}")
    print(f"sample: {text!r}")
    files = {f.name: f.stat().st_size for f in sorted(hf_dir.iterdir())}
    metrics = {"max_abs_logit_diff": diff, "bytes": sum(files.values()), "files": len(files)}
    write_json_atomic(run_dir / "export_metrics.json", metrics)
    write_text_atomic(run_dir / "sample.txt", text + "\n")
    tracker = open_model_run(project.root, params.tracking, params.train.run_name, run_dir / RUN_FILE)
    with finishing(tracker):
        send_missing_curve(tracker, run_dir / "plots")  # what a store away at the end of training lacks
        tracker.log_artifact(run_dir / "export_metrics.json", "export")  # one-off numbers: a file, not charts
        tracker.log_text(text, "sample.txt")
        # the eval numbers the card shows, as the registered version's metrics (they land on the run too,
        # so they have the evaluate stage's names: unprefixed, listed after the curves)
        model_metrics = {f"{split}_xent": float(m["loss"]) for split, m in facts.upstream.items() if "loss" in m}
        model_metrics |= {f"avg.{shots}shot.acc": avg for shots, avg in facts.downstream_average.items()}
        log_hf_model(
            tracker,
            hf_dir,
            card,
            registered_model=params.tracking.registered_model,
            metrics={**model_metrics, "max_abs_logit_diff": float(diff)},
            step=int(info["step"]),
            license_text=licence,
            tags={"cgpt.preset": params.model.preset, "cgpt.run_name": params.train.run_name,
                  "cgpt.data.tokens": file_digest(tokens / "index.json"),
                  **{k: v for k, v in provenance_tags(project.root).items() if "git" in k or k.startswith("dvc.")}},
        )  # fmt: skip
    return metrics
