"""`cgpt eval` as a user runs it, and the results table beside the card."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from paths import EVAL_FIXTURES

from cgpt.commands.eval import limit_arg, resolved_limit
from cgpt.data.tokenize.tokenizer import save_tokenizer, train_tokenizer
from cgpt.eval.models import ModelShape
from cgpt.eval.results import EvalResults, TaskResult
from cgpt.eval.table import AVERAGE, card_preset_for, card_rows, format_table, results_table, write_table
from cgpt.export.hf import export_hf
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig
from cgpt.published import ZERO_SHOT

FIXTURES = EVAL_FIXTURES


def cgpt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgpt.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evalcli")
    texts = [line for f in sorted(FIXTURES.glob("*/*.jsonl")) for line in f.read_text().splitlines()]
    tok = train_tokenizer(texts, vocab_size=400, min_frequency=1)
    tj = save_tokenizer(tok, root)
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=1, d_model=32, n_head=2, d_ffn=64, vocab_size=tok.get_vocab_size(), n_positions=1024)
    eos = tok.token_to_id("<|endoftext|>")
    return export_hf(GPT(cfg).state_dict(), cfg, root / "hf", tokenizer_json=tj, eos_token_id=eos)


def test_eval_prints_the_table_and_writes_results(hf_dir, tmp_path):
    out = tmp_path / "out"
    r = cgpt(
        "eval",
        "--model",
        str(hf_dir),
        "--data",
        str(FIXTURES),
        "--tasks",
        "piqa",
        "arc_easy",
        "--num-fewshot",
        "0",
        "5",
        "--compare-to",
        "cerebras-256m",
        "--out",
        str(out),
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("| row") and "PIQA" in lines[0] and "ARC-e" in lines[0] and "HellaSwag" not in lines[0]
    card = [line for line in lines if line.startswith("| 0-shot card cerebras-256m")]
    assert card and "0.613" in card[0] and "0.410" in card[0]  # PIQA and ARC-e of the 256M card row
    assert any(line.startswith("| 5-shot ours - card") for line in lines)
    summary = json.loads((out / "results.json").read_text())
    assert {(x["task"], x["num_fewshot"]) for x in summary["results"]} == {
        ("piqa", 0),
        ("piqa", 5),
        ("arc_easy", 0),
        ("arc_easy", 5),
    }
    assert (out / "results.csv").is_file() and (out / "results.md").read_text().startswith("| row")
    assert len((out / "samples" / "piqa_5shot.jsonl").read_text().splitlines()) == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nowhere"], "error: nowhere: not a model"),
        (["--compare-to", "cerebras-3b"], "error: --compare-to 'cerebras-3b'"),
        (["--num-fewshot", "-1"], "error: --num-fewshot"),
        (["--tasks", "piqa", "--data", "EMPTY"], "error: EMPTY: missing piqa/validation.jsonl, piqa/train.jsonl"),
    ],
)
def test_eval_errors_are_one_line(hf_dir, tmp_path, args, message):
    (tmp_path / "EMPTY").mkdir()
    base = ["eval", "--model", str(hf_dir), "--device", "cpu"]
    r = cgpt(*base, *args, cwd=tmp_path)
    assert r.returncode == 2
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].startswith(message), r.stderr


def test_score_is_eval_with_the_pipelines_limit(hf_dir, tmp_path):
    """``cgpt score`` is ``cgpt eval``; without --limit it samples like ``evaluate.limit: auto`` (no
    cerebras-* card row here: the first 200 documents) and says so."""
    r = cgpt("score", "--model", str(hf_dir), "--data", str(FIXTURES), "--tasks", "piqa", "--num-fewshot", "0",
             "--device", "cpu", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "PIQA" in r.stdout.splitlines()[0]
    assert "at most the first 200 documents per task (--limit auto: no cerebras-* card row" in r.stdout


def test_eval_and_evaluate_say_which_is_which(tmp_path):
    ev = cgpt("eval", "--help", cwd=tmp_path).stdout
    assert "Score any model folder" in ev and "use `cgpt evaluate`" in ev and "--limit N|auto|all" in ev
    stage = cgpt("evaluate", "--help", cwd=tmp_path).stdout
    assert "on the project's own model" in stage and "cgpt eval (alias cgpt score)" in stage
    top = cgpt("--help", cwd=tmp_path).stdout
    assert "eval (score)" in top and "any model folder: eval" in top


@pytest.mark.parametrize(
    ("text", "preset", "limit"),
    [
        ("auto", None, 200),  # no card row to compare with: the pipeline's CPU sample
        ("auto", "cerebras-111m", None),  # compared with the card: every document
        ("all", None, None),
        ("all", "cerebras-111m", None),
        ("50", "cerebras-111m", 50),
    ],
)
def test_limit(text, preset, limit):
    assert resolved_limit(limit_arg(text), preset) == limit


@pytest.mark.parametrize("text", ["0", "-3", "some"])
def test_a_wrong_limit_is_a_usage_error(hf_dir, tmp_path, text):
    r = cgpt("eval", "--model", str(hf_dir), "--limit", text, cwd=tmp_path)
    assert r.returncode == 2 and "argument --limit: expected a" in r.stderr


def test_card_row_is_found_from_the_model_shape():
    assert card_preset_for(ModelShape(10, 768, 12, 50257)) == "cerebras-111m"
    assert card_preset_for(ModelShape(10, 768, 12, 50257, mup=True)) == "cerebras-111m-mup"
    assert card_preset_for(ModelShape(24, 2048, 16, 50257)) == "cerebras-1.3b"
    assert card_preset_for(ModelShape(10, 768, 12, 8192)) is None  # another vocabulary: not the card's model
    assert card_preset_for(None) is None


def _fake_results(accs: dict[str, float]) -> EvalResults:
    tasks = [
        TaskResult(
            t,
            0,
            100,
            a,
            0.01,
            acc_norm=a + 0.01 if t != "winogrande" else None,
            perplexity=20.0 if t == "lambada_openai" else None,
        )
        for t, a in accs.items()
    ]
    return EvalResults("m", tasks)


def test_table_average_and_differences(tmp_path):
    card = card_rows("cerebras-111m")
    accs = dict(ZERO_SHOT["111m"].acc)
    df = results_table(_fake_results(accs), card, "cerebras-111m")
    assert list(df.columns[:7]) == ["HellaSwag", "PIQA", "WinoGrande", "LAMBADA", "ARC-e", "ARC-c", "OpenBookQA"]
    assert df.loc["0-shot acc", AVERAGE] == pytest.approx(sum(accs.values()) / 7)
    assert df.loc["0-shot card cerebras-111m", AVERAGE] == 0.315
    assert all(abs(v) < 1e-12 for v in df.loc["0-shot ours - card"].dropna().drop(AVERAGE))
    assert math.isnan(df.loc["0-shot acc_norm", "WinoGrande"]) and df.loc["0-shot acc", "LAMBADA ppl"] == 20.0
    partial = results_table(_fake_results({"piqa": 0.6}))
    assert list(partial.columns) == ["PIQA"] and "0-shot acc_norm" in partial.index
    csv, md = write_table(df, tmp_path)
    back = pd.read_csv(csv, index_col=0)
    assert back.loc["0-shot acc", "PIQA"] == pytest.approx(accs["piqa"])
    assert md.read_text() == format_table(df) + "\n" and "| 0-shot ours - card" in md.read_text()
