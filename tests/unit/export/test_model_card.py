"""The model card reads right: a real title, no made-up link, the precision that ran, the evaluation's notes,
tables whose rows survive ``<|endoftext|>``'s pipes, and a note when token counts differ."""

from __future__ import annotations

import re

from cgpt.export.model_card import CardFacts, cell, model_card
from cgpt.presets import ModelConfig, get_preset
from cgpt.stages.export import eval_notes, trained_precision


def _facts(**kw) -> CardFacts:
    cfg = ModelConfig(n_layer=2, d_model=64, n_head=4, d_ffn=256, vocab_size=8192, n_positions=128)
    base = dict(
        name="default",
        preset="cpu-tiny",
        model=cfg,
        recipe=get_preset("cpu-tiny").recipe,
        tokens_seen=30_720,
        tokenizer="a byte-level BPE trained on the corpus, vocabulary 8,192",
        eos_token="<|endoftext|>",
        data={
            "sources": ["`corpus` (local)"],
            "cleaning": "ftfy",
            "documents": 60,
            "tokens": {"train": 9000, "val": 700},
        },
        precision="fp32",
        license="apache-2.0",
        folder="runs/default/hf",
        upstream={"val": {"loss": 5.27, "perplexity": 194.4, "tokens": 689}},
        downstream=[{"task": "hellaswag", "shots": 5, "acc": 0.25, "acc_norm": 0.26, "n": 200}],
    )
    return CardFacts(**{**base, **kw})


def _rows(card: str) -> list[str]:
    return [line for line in card.splitlines() if line.startswith("|")]


def test_title_link_precision_and_licence():
    card = model_card(_facts())
    assert (
        "\n# cgpt/default: a " in card and "-parameter GPT-3-style decoder (2 layers x 64, SP, preset cpu-tiny)" in card
    )
    assert "https://github.com/)" not in card and "trained with cgpt," in card
    assert "[cgpt](https://example.org/cgpt)" in model_card(_facts(project_url="https://example.org/cgpt"))
    assert "\n# cgpt-small: a " in model_card(_facts(name="small", model_name="cgpt-small"))  # a family member
    assert "| training precision | fp32 |" in card
    assert "license: apache-2.0" in card and "the Apache-2.0 licence (the `LICENSE` file beside this card" in card


def test_every_table_row_has_its_columns_despite_pipes():
    card = model_card(_facts())
    assert "`<\\|endoftext\\|>` ends every document" in card
    for row in _rows(card):
        cells = re.split(r"(?<!\\)\|", row)[1:-1]  # split at unescaped pipes only, as GitHub and the Hub do
        assert len(cells) in (2, 4, 5), row
    assert cell("a|b\nc") == "a\\|b c"


def test_notes_for_skipped_tasks_fallback_pools_and_token_counts():
    summary = {
        "settings": {"skipped_tasks": {"lambada_openai": "no network and no cached copy"}},
        "results": [
            {"task": "hellaswag", "num_fewshot": 5, "fewshot_pool": "validation (train split unavailable)"},
            {"task": "piqa", "num_fewshot": 5, "fewshot_pool": "train"},
            {"task": "piqa", "num_fewshot": 0, "fewshot_pool": None},
        ],
    }
    notes = eval_notes(summary)
    assert notes == [
        "hellaswag 5-shot: the few-shot examples came from the validation split (train split unavailable), "
        "excluding the evaluated document; not lm-eval's stock 5-shot setting.",
        "lambada_openai was not evaluated: its data was unavailable (no network and no cached copy).",
    ]
    card = model_card(_facts(eval_notes=notes))
    assert "Note: hellaswag 5-shot: the few-shot examples came from the validation split" in card
    assert "Note: lambada_openai was not evaluated" in card
    assert "counts the tokens *scored*" in card  # 689 scored of the val split's 700
    same = model_card(_facts(upstream={"val": {"loss": 5.27, "perplexity": 194.4, "tokens": 700}}))
    assert "tokens *scored*" not in same
    assert eval_notes({}) == []


def test_precision_is_what_ran():
    assert trained_precision({"precision": "bf16"}, "auto") == "bf16"
    assert trained_precision({}, "fp32") == "fp32"
    assert trained_precision({}, "auto").startswith("not recorded")
