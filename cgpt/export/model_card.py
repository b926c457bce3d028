"""The model card (``README.md``) that every export writes, in the Hugging Face format, modelled on Cerebras-GPT's.

The Hub renders the YAML front matter (licence, tags, pipeline) and the markdown below it. Every
number is this run's own (read from the files the stages wrote), so the card is true of the folder
it sits in: shape, tokenizer, data and cleaning, tokens, steps, batch, LR schedule, evaluation.
(The Cerebras-GPT card's published numbers, which cgpt compares with, are :mod:`cgpt.published`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from cgpt.export.license import hub_license, spdx_id
from cgpt.formatting import human_count
from cgpt.presets import ModelConfig, TrainRecipe


@dataclass
class CardFacts:
    """What the card says, gathered by the export stage."""

    name: str  # the run name (the folder's model id)
    preset: str
    model: ModelConfig
    recipe: TrainRecipe
    tokens_seen: int
    tokenizer: str  # "GPT-2 BPE (pretrained from ...)" or "byte-level BPE trained on the corpus"
    eos_token: str
    data: dict[str, Any]  # {"sources": [...], "cleaning": str, "documents": int, "tokens": {split: n}}
    precision: str  # what training ran in (fp32, bf16), not `auto`
    license: str  # export.license (a Hub licence id, any case; see cgpt.export.license)
    folder: str  # where the export lives, for the quickstart
    upstream: dict[str, dict[str, float]] = field(default_factory=dict)  # {"val": {"loss", "perplexity", "tokens"}}
    downstream: list[dict[str, Any]] = field(default_factory=list)  # rows: task, shots, acc, acc_norm, n
    downstream_average: dict[int, float] = field(default_factory=dict)  # shots -> mean acc of the 7 tasks
    sample: str = ""
    model_name: str = "cgpt"  # the registered model's name: with the run name, the card's title
    project_url: str | None = None  # cgpt's home page, from the installed package's metadata (None: no link)
    eval_notes: list[str] = field(default_factory=list)  # skipped tasks, few-shot pools that were a fallback


def project_url() -> str | None:
    """cgpt's home page as its package metadata names it (``[project.urls]``), or None: the card links to no
    made-up address."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("cgpt").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    for entry in urls:  # "Homepage, https://..."
        url = entry.split(",", 1)[-1].strip()
        if url.startswith(("https://", "http://")) and url.rstrip("/") not in (
            "https://github.com",
            "http://github.com",
        ):
            return url
    return None


def cell(text: object) -> str:
    """A markdown table cell: pipes escaped (GitHub and the Hub split a row at every bare ``|``, also inside
    backticks, so ``<|endoftext|>`` broke the vocabulary row), line breaks folded."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def title(f: CardFacts) -> str:
    """What the model is, not just its run's name (``default`` tells a reader nothing)."""
    m = f.model
    # a family member's registered model already ends in its run name (cgpt-<member>)
    name = f.model_name if f.model_name.endswith(f"-{f.name}") else f"{f.model_name}/{f.name}"
    return (
        f"{name}: a {human_count(m.num_params())}-parameter GPT-3-style decoder "
        f"({m.n_layer} layers x {m.d_model}, {m.parameterization.upper()}, preset {f.preset})"
    )


def token_count_note(f: CardFacts) -> str | None:
    """Why the evaluation table's token counts are not the corpus's (when they differ): it counts tokens scored."""
    corpus = f.data.get("tokens", {})
    scored = {s: m.get("tokens") for s, m in f.upstream.items()}
    if all(n is None or corpus.get(s) in (None, n) for s, n in scored.items()):
        return None
    return (
        "The evaluation table counts the tokens *scored*, not the split's tokens above: the split is cut into "
        f"windows of {f.recipe.seq_len} + 1 tokens and each window's first token is only context, so a split of N "
        f"tokens scores about N x {f.recipe.seq_len}/{f.recipe.seq_len + 1} (fewer when `evaluate.max_tokens` caps it)."
    )


def _license_name(license_id: str) -> str:
    spdx = spdx_id(license_id)
    return f"the {spdx} licence" if spdx else f"the licence `{license_id}`"


def front_matter(f: CardFacts) -> dict[str, Any]:
    tags = ["pytorch", "causal-lm", "gpt2", "cerebras-gpt-recipe", "cgpt"]
    meta: dict[str, Any] = {
        "language": ["en"],
        "license": hub_license(f.license),
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": tags,
    }
    results = []
    for split, m in f.upstream.items():
        if m.get("loss") is not None:
            results.append({
                "task": {"type": "text-generation", "name": "Language modeling"},
                "dataset": {"type": "custom", "name": f"{split} split of the training corpus"},
                "metrics": [
                    {"type": "cross_entropy", "value": round(m["loss"], 4), "name": f"{split} xent (nats/token)"}
                ],
            })  # fmt: skip
    for row in f.downstream:
        results.append({
            "task": {"type": "multiple-choice" if row["task"] != "lambada_openai" else "text-generation"},
            "dataset": {"type": row["task"], "name": row["task"]},
            "metrics": [{"type": "accuracy", "value": round(row["acc"], 4), "name": f"acc ({row['shots']}-shot)"}],
        })  # fmt: skip
    if results:
        meta["model-index"] = [{"name": f.name, "results": results}]
    return meta


def model_card(f: CardFacts) -> str:
    m, r = f.model, f.recipe
    lines = ["---", yaml.safe_dump(front_matter(f), sort_keys=False).rstrip(), "---", ""]
    cgpt = f"[cgpt]({f.project_url})" if f.project_url else "cgpt"
    lines += [
        f"# {title(f)}",
        "",
        f"A GPT-3-style decoder ({human_count(m.num_params())} parameters, {m.parameterization.upper()}) trained with "
        f"{cgpt}, which reproduces the "
        "[Cerebras-GPT](https://huggingface.co/cerebras/Cerebras-GPT-13B) recipe: pre-LN blocks, learned positions, "
        "exact GELU, tied embeddings, the Model Zoo's AdamW and LR schedule, trained on "
        f"{human_count(f.tokens_seen)} tokens. It loads as a plain `GPT2LMHeadModel` with no custom code.",
        "",
        "## Model details",
        "",
        "| | |",
        "|---|---|",
    ]
    rows = [
        ("preset", f"`{f.preset}`"),
        ("parameters", f"{m.num_params():,} (tied LM head counted once)"),
        ("layers x width", f"{m.n_layer} x {m.d_model}"),
        ("attention heads", f"{m.n_head} (head size {m.d_head})"),
        ("feed-forward width", f"{m.d_ffn}"),
        ("context length", f"{r.seq_len} tokens (positions: {m.n_positions})"),
        ("vocabulary", f"{m.vocab_size:,} ({f.tokenizer}); `{f.eos_token}` ends every document"),
        ("parameterization", "µP (folded into plain GPT-2 weights for export)" if m.is_mup else "standard (SP)"),
        ("activation", "exact (erf) GELU, `activation_function: gelu`"),
        (
            "optimizer",
            f"AdamW, betas {r.betas}, eps {r.eps:g}, weight decay {r.weight_decay:g}, clipping {r.grad_clip:g}",
        ),
        ("training precision", f.precision),
    ]
    lines += [f"| {cell(k)} | {cell(v)} |" for k, v in rows]
    lines += [
        "",
        "## Training data and procedure",
        "",
    ]
    sources = ", ".join(f.data.get("sources", [])) or "see the project's params.yaml"
    tokens = f.data.get("tokens", {})
    lines += [
        f"- **Corpus:** {sources}.",
        f"- **Cleaning:** {f.data.get('cleaning', 'ftfy NFC per document')}; "
        f"{f.data.get('documents', 0):,} documents kept.",
        "- **Tokens:** " + ", ".join(f"{s} {n:,}" for s, n in tokens.items()) + ".",
        f"- **Steps:** {r.optimizer_steps():,} optimizer steps of {r.batch_size} sequences x {r.seq_len} tokens "
        f"= {human_count(f.tokens_seen)} tokens.",
        f"- **Learning rate:** linear warm-up from 0 to {r.peak_lr:g} over {r.warmup_steps:,} steps, then {r.decay} "
        f"decay to {r.end_lr:g} over {r.decay_steps:,} steps.",
        "",
    ]
    if f.upstream or f.downstream:
        lines += ["## Evaluation", ""]
    if f.upstream:
        lines += ["| split | cross-entropy (nats/token) | perplexity | tokens scored |", "|---|---|---|---|"]
        for split, mm in f.upstream.items():
            if mm.get("loss") is not None:
                lines.append(f"| {cell(split)} | {mm['loss']:.4f} | {mm['perplexity']:.2f} | {int(mm['tokens']):,} |")
        lines.append("")
        if note := token_count_note(f):
            lines += [note, ""]
    if f.downstream:
        lines += [
            "Downstream tasks scored like lm-evaluation-harness 0.4.13 (`acc` is what the Cerebras-GPT card "
            "reports; `acc_norm` beside it):",
            "",
            "| task | shots | acc | acc_norm | documents |",
            "|---|---|---|---|---|",
        ]
        for row in f.downstream:
            norm = f"{row['acc_norm']:.3f}" if row.get("acc_norm") is not None else "-"
            lines.append(
                f"| {cell(row['task'])} | {row['shots']} | {row['acc']:.3f} | {norm} | {cell(row.get('n') or '-')} |"
            )
        for shots, avg in sorted(f.downstream_average.items()):
            lines.append(f"| **average** | {shots} | **{avg:.3f}** | | |")
        lines.append("")
    if f.eval_notes:
        lines += [f"Note: {n}" for n in f.eval_notes] + [""]
    lines += [
        "## How to use",
        "",
        "```python",
        "from transformers import AutoTokenizer, AutoModelForCausalLM, pipeline",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{f.folder}")',
        f'model = AutoModelForCausalLM.from_pretrained("{f.folder}")',
        'pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)',
        'print(pipe("Generative AI is ", max_length=50, do_sample=False, no_repeat_ngram_size=2)[0]["generated_text"])',
        "```",
        "",
    ]
    if f.sample:
        lines += ["A greedy sample from this folder:", "", "```", f.sample, "```", ""]
    lines += [
        "## Limitations",
        "",
        "- A research artifact: trained for a fixed compute budget on the corpus above, with no instruction "
        "tuning, alignment or safety filtering. It continues text; it does not follow instructions.",
        "- It reproduces the biases and errors of its training text, and can generate false or offensive "
        "statements. Evaluate it for your use before deploying it.",
        "- Its quality depends on its size and data: small models trained on a small corpus produce fluent-looking "
        "but mostly meaningless text.",
        "",
        "## Licence",
        "",
        f"The weights are released under {_license_name(f.license)} (the `LICENSE` file beside this card; set "
        "`export.license` in params.yaml). The training data keeps its own licence; check each source's terms.",
        "",
    ]
    return "\n".join(lines)
