"""The run params.yaml describes, resolved: what ``cgpt check`` prints before anything runs.

Every ``null`` in params.yaml means "the preset's value"; this shows the values that will be used
(steps, schedule, batch, shape, data, tokenizer, where outputs go), so a user can check a
configuration without starting a stage.
"""

from __future__ import annotations

from pathlib import Path

from cgpt.config import Params
from cgpt.core.project import Project
from cgpt.data.tokens import vocab_size_for
from cgpt.devices import resolve_device
from cgpt.formatting import human_count
from cgpt.train.schedule import tokens_seen
from cgpt.train.setup import resolve_precision


def _device_and_precision(device: str, precision: str) -> tuple[str, str]:
    """``auto`` with what it resolves to on this machine (what the MLflow run's ``train.device`` and
    ``train.precision`` params will say), e.g. ``auto (here: cpu)``, ``auto (here: fp32; bf16 on
    CUDA, fp32 on CPU)``."""
    here = resolve_device("auto") if device == "auto" else device
    device_text = f"auto (here: {here})" if device == "auto" else device
    if precision != "auto":
        return device_text, precision
    try:
        ran = resolve_precision("auto", here)
    except (RuntimeError, AssertionError):  # an explicit CUDA device on a machine without one
        return device_text, "auto (bf16 on CUDA, fp32 on CPU)"
    return device_text, f"auto (here: {ran}; bf16 on CUDA, fp32 on CPU)"


def describe_run(params: Params, root: Path) -> list[tuple[str, str]]:
    """(label, text) rows of the resolved run."""
    recipe, t = params.recipe(), params.train
    vocab, vocab_note = vocab_size_for(params.tokenize.tokenizer, Project(root).tokens)
    cfg = params.build_model_config(vocab)
    steps = recipe.optimizer_steps()
    size = f"{human_count(cfg.num_params())} params" + (f" with vocab {vocab:,} ({vocab_note})" if vocab else "")
    shape = (
        f"{params.model.preset}: {cfg.n_layer} layers x {cfg.d_model} ({cfg.n_head} heads of {cfg.d_head}), "
        f"d_ffn {cfg.d_ffn}, positions {cfg.n_positions}, {cfg.parameterization.upper()}; {size}"
    )
    decay = f"{recipe.decay} decay {recipe.decay_steps:,} steps"
    schedule = (
        f"{steps:,} steps x {recipe.batch_size} seqs x {recipe.seq_len} tokens = "
        f"{human_count(tokens_seen(recipe, steps))} tokens; lr {recipe.peak_lr:.2e} -> {recipe.end_lr:.2e} "
        f"(warm-up {recipe.warmup_steps:,} steps, {decay})"
    )
    optim = (
        f"AdamW ({t.optimizer}) betas {recipe.betas}, eps {recipe.eps:g}, weight decay {recipe.weight_decay:g}, "
        f"clip {recipe.grad_clip:g}" + (f", micro-batch {t.micro_batch_size}" if t.micro_batch_size else "")
    )
    if recipe.batch_switch is not None:
        sw = recipe.batch_switch
        optim += f"; batch {recipe.batch_size} -> {sw.batch_size} after step {sw.at_step:,}"
    sources = ", ".join(
        f"{s.name} ({s.kind}{', split ' + s.split if s.split else ''})" for s in params.download.sources
    )
    c = params.clean
    cleaning = (
        (f"ftfy {c.normalization}" if c.fix_text else f"normalization {c.normalization or 'none'}")
        + (", exact dedup" if c.dedup.exact else "")
        + (", near dedup" if c.dedup.near else "")
    )
    tok = params.tokenize
    tokenizer = (
        f"byte-level BPE trained on the corpus (vocab {tok.tokenizer.vocab_size:,})"
        if tok.tokenizer.kind == "train"
        else "GPT-2's byte-level BPE (vocab 50,257; OpenAI's files, sha256-pinned)"
        if tok.tokenizer.kind == "gpt2"
        else "bytes (vocab 257: the 256 byte values and <|endoftext|>)"
        if tok.tokenizer.kind == "bytes"
        else f"pretrained from {tok.tokenizer.path}"
    )
    split = f"val {tok.split.val:.1%}, test {tok.split.test:.1%} (seed {tok.split.seed}; official splits kept)"
    device, precision = _device_and_precision(t.device, t.precision)
    options = (("torch.compile", t.compile), ("activation checkpointing", t.activation_checkpointing))
    extras = "".join(f", {name}" for name, on in options if on)
    loop = (
        f"device {device}, precision {precision}{extras}, seed {t.seed}; log every {t.log_interval}, validate "
        f"every {t.eval_interval}, checkpoint every {t.checkpoint_interval} steps (keep {t.keep_checkpoints})"
    )
    d = t.distributed
    if d.launched:
        ranks = f"{d.nproc_per_node} process(es) per node x {d.nnodes} node(s)"
        where = f", rendezvous {d.rdzv_endpoint}" if d.rdzv_endpoint else ""
        share = (
            f"; {recipe.batch_size // (d.nproc_per_node * d.nnodes)} sequences per rank per step"
            if d.nproc_per_node != "auto"
            else ""
        )
        parallel = f"{d.strategy}: {ranks}{where}{share} (dvc repro launches them; or torchrun)"
    else:
        parallel = "one process (train.distributed.strategy: none)"
    prompt = params.export.sample_prompt
    export = (
        f"{params.export.dtype}, sample prompt {prompt!r}"
        if prompt is not None
        else (f"{params.export.dtype}, sample prompt: the first words of the val split")
    )
    tracking = f"MLflow experiment {params.tracking.experiment!r}" if params.tracking.enabled else "MLflow off"
    return [
        ("run", f"{t.run_name} -> {root / 'runs' / t.run_name}"),
        ("model", shape),
        ("schedule", schedule),
        ("optimizer", optim),
        ("data", f"{sources}; clean: {cleaning}"),
        ("tokenizer", f"{tokenizer}; split {split}"),
        ("training", loop),
        ("parallel", parallel),
        ("evaluate", f"splits {', '.join(params.evaluate.splits)}"),
        ("export", export),
        ("tracking", tracking),
        ("family", _family_line(params, root)),
    ]


def _family_line(params: Params, root: Path) -> str:
    """The family in one line: its members, the compute they span, its tokenizer, how to run it."""
    from cgpt.family.members import family_members
    from cgpt.family.params import family_tokens_spec

    if not params.family.members:
        return "none (family.members: {})"
    spec = family_tokens_spec(params)
    vocab, _ = vocab_size_for(spec.tokenizer, Project(root).family_tokens)
    members = family_members(params, vocab, root)
    span = members[-1].compute / members[0].compute
    names = f"{members[0].name} … {members[-1].name}" if len(members) > 2 else ", ".join(m.name for m in members)
    tokenizer = "the single model's" if params.family.tokenizer is None else f"kind {spec.tokenizer.kind}"
    return (
        f"{len(members)} members ({names}), {human_count(members[0].n_params)} to "
        f"{human_count(members[-1].n_params)} params, {span:.0f}x compute; tokenizer {tokenizer}; "
        "family/dvc.yaml (make family)"
    )
