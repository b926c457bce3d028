"""Cross-check against lm-evaluation-harness 0.4.13 itself: every prompt, loglikelihood and metric.

Runs the real harness (HF backend, ``simple_evaluate`` with ``log_samples``) offline on local jsonl
files with the stock task YAMLs ``include``d (tests/lm_eval_reference.py), and cgpt's evaluator on
the same exported model and documents. Per document: identical (context, continuation) strings,
|loglikelihood difference| <= 1e-4, identical is_greedy, acc and acc_norm; per task: identical
acc/acc_norm and stderrs, perplexity and its bootstrap stderr to float precision.

Models: a GPT-2-BPE model (the real 50257-token vocabulary; n_positions 128, so 5-shot prompts are
left-truncated) and a model with a small trained BPE (n_positions 384: some 5-shot prompts fit,
some are truncated). Data: the first documents of shared/eval-data (skipped when absent; HellaSwag
5-shot too, its train split is missing there) and the fixtures (HellaSwag's bracketed WikiHow rows,
HellaSwag 5-shot from a stand-in train split, and HellaSwag with no train split, where the pool is
the evaluated split itself and the k+1 rule must drop the document).

Needs ``pip install -e .[crosscheck]``; installs nothing, needs no network.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cgpt.data.tokenize.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer
from cgpt.eval.downstream import evaluate_tasks, score_task
from cgpt.eval.models import load_eval_model
from cgpt.eval.results import TaskResult
from cgpt.eval.taskdata import TaskData
from cgpt.eval.tasks import TASK_REGISTRY, get_task
from cgpt.export.hf import export_hf
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig

pytestmark = [pytest.mark.slow, pytest.mark.crosscheck]
lm_eval = pytest.importorskip("lm_eval", reason="lm-eval not installed: pip install -e .[crosscheck]")
if getattr(lm_eval, "__version__", "") != "0.4.13":
    pytest.skip(f"lm-eval {lm_eval.__version__} installed; this cross-check pins 0.4.13", allow_module_level=True)

from lm_eval_reference import run_lm_eval  # noqa: E402  (tests/ is on sys.path under pytest)
from paths import EVAL_FIXTURES, GPT2_TOKENIZER, SHARED_EVAL  # noqa: E402

FIXTURES = EVAL_FIXTURES
TASKS = list(TASK_REGISTRY)
BOOTSTRAP = 1000
REPORT: list[str] = []


def _export(root: Path, tokenizer, n_positions: int, n_layer: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    tj = save_tokenizer(tokenizer, root)
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_layer=n_layer, d_model=32, n_head=2, d_ffn=64, vocab_size=tokenizer.get_vocab_size(), n_positions=n_positions
    )
    model = GPT(cfg)
    with torch.no_grad():  # move biases and LayerNorms off their init so that mistakes show
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return export_hf(
        model.state_dict(), cfg, root / "hf", tokenizer_json=tj, eos_token_id=tokenizer.token_to_id("<|endoftext|>")
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    work = tmp_path_factory.mktemp("lmeval")
    mp = pytest.MonkeyPatch()
    for k, v in {
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(work / "hf_home"),
        "DISABLE_MULTIPROC": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        mp.setenv(k, v)
    yield work
    mp.undo()
    if REPORT:
        print("\ncross-check against lm-eval 0.4.13:\n" + "\n".join(REPORT))


@pytest.fixture(scope="module")
def gpt2_model(env) -> Path:
    if not (GPT2_TOKENIZER / "vocab.json").is_file():
        pytest.skip("../shared/gpt2-tokenizer is absent")
    return _export(env / "gpt2", load_tokenizer(GPT2_TOKENIZER), n_positions=128, n_layer=1)


@pytest.fixture(scope="module")
def trained_model(env) -> Path:
    texts = [
        json.dumps(json.loads(line)) for f in sorted(FIXTURES.glob("*/*.jsonl")) for line in f.read_text().splitlines()
    ]
    return _export(
        env / "trained", train_tokenizer(texts * 3, vocab_size=1024, min_frequency=1), n_positions=384, n_layer=2
    )


def _compare(label: str, ours: TaskResult, samples: list[dict], results: dict) -> None:
    samples = sorted(samples, key=lambda s: s["doc_id"])
    assert [s["doc_id"] for s in samples] == [d.doc_index for d in ours.docs], label
    max_dll, prompt_diff, metric_diff = 0.0, 0, 0
    for d, s in zip(ours.docs, samples):
        if [tuple(a) for a in s["arguments"]] != [tuple(r) for r in d.requests]:
            prompt_diff += 1
        lls = [r[0][0] for r in s["resps"]]
        greedy = [bool(r[0][1]) for r in s["resps"]]
        max_dll = max(max_dll, *(abs(a - b) for a, b in zip(lls, d.loglikelihoods)))
        same = greedy == d.is_greedy and float(s["acc"]) == d.acc
        if "acc_norm" in s:
            same &= float(s["acc_norm"]) == d.acc_norm
        metric_diff += not same
    REPORT.append(
        f"  {label:42s} docs {ours.n_docs:3d}  requests {ours.n_requests:4d}  max|dll| {max_dll:.1e}  "
        f"prompt mismatches {prompt_diff}  acc/acc_norm/greedy mismatches {metric_diff}"
    )
    assert prompt_diff == 0 and metric_diff == 0 and max_dll <= 1e-4, REPORT[-1]
    assert results["acc,none"] == ours.acc and results["acc_stderr,none"] == ours.acc_stderr, label
    if "acc_norm,none" in results:
        assert results["acc_norm,none"] == ours.acc_norm and results["acc_norm_stderr,none"] == ours.acc_norm_stderr
    if "perplexity,none" in results:
        assert results["perplexity,none"] == pytest.approx(ours.perplexity, rel=1e-4)
        assert results["perplexity_stderr,none"] == pytest.approx(ours.perplexity_stderr, rel=1e-3)


def _crosscheck(name: str, model_dir: Path, data: Path, k: int, limit: int | None, work: Path) -> None:
    tasks = [t for t in TASKS if k == 0 or (data / t / f"{get_task(t).fewshot_split}.jsonl").is_file()]
    ref = run_lm_eval(
        model_dir, data, tasks, k, work=work / f"{name}_{data.name}_{k}", limit=limit, bootstrap_iters=BOOTSTRAP
    )
    ours = evaluate_tasks(
        load_eval_model(model_dir, device="cpu"),
        tasks,
        [k],
        data=data,
        limit=limit,
        bootstrap_iters=BOOTSTRAP,
        keep_prompts=True,
        progress=False,
    )
    for t in tasks:
        _compare(
            f"{name} {data.parent.name}/{data.name} {t} {k}-shot", ours.get(t, k), ref["samples"][t], ref["results"][t]
        )


@pytest.mark.parametrize("k, limit", [(0, 50), (5, 20)])
def test_gpt2_bpe_model_on_shared_data(gpt2_model, env, k, limit):
    if not (SHARED_EVAL / "piqa" / "validation.jsonl").is_file():
        pytest.skip("../shared/eval-data is absent")
    _crosscheck("gpt2-bpe", gpt2_model, SHARED_EVAL, k, limit, env)


@pytest.mark.parametrize("k", [0, 5])
def test_trained_bpe_model_on_shared_data(trained_model, env, k):
    if not (SHARED_EVAL / "piqa" / "validation.jsonl").is_file():
        pytest.skip("../shared/eval-data is absent")
    _crosscheck("trained-bpe", trained_model, SHARED_EVAL, k, 50, env)


def test_trained_bpe_model_on_fixtures_5shot(trained_model, env):
    _crosscheck("trained-bpe", trained_model, FIXTURES, 5, None, env)


def test_hellaswag_without_train_split_draws_from_itself(trained_model, env):
    ref = run_lm_eval(
        trained_model,
        FIXTURES,
        ["hellaswag"],
        5,
        work=env / "hs_val_pool",
        bootstrap_iters=BOOTSTRAP,
        splits={"hellaswag": ["validation"]},
    )
    task = replace(get_task("hellaswag"), training_split=None)
    docs = TaskData(FIXTURES).load(task, "validation")
    ours = score_task(
        load_eval_model(trained_model, device="cpu"),
        task,
        docs,
        docs,
        5,
        keep_prompts=True,
        progress=False,
        bootstrap_iters=BOOTSTRAP,
    )
    _compare(
        "trained-bpe fixtures hellaswag 5-shot, pool = itself",
        ours,
        ref["samples"]["hellaswag"],
        ref["results"]["hellaswag"],
    )
    # The same through evaluate_tasks' fallback (a folder without hellaswag/train.jsonl), recorded as such.
    folder = env / "hs_no_train"
    (folder / "hellaswag").mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "hellaswag" / "validation.jsonl", folder / "hellaswag" / "validation.jsonl")
    res = evaluate_tasks(
        load_eval_model(trained_model, device="cpu"),
        ["hellaswag"],
        [5],
        data=folder,
        keep_prompts=True,
        progress=False,
        bootstrap_iters=BOOTSTRAP,
    )
    fallback = res.get("hellaswag", 5)
    assert fallback is not None and fallback.fewshot_pool == "validation (train split unavailable)"
    _compare(
        "trained-bpe hellaswag 5-shot, fallback pool",
        fallback,
        ref["samples"]["hellaswag"],
        ref["results"]["hellaswag"],
    )
