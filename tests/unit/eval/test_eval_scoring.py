"""The fast scorer against a direct per-request computation, and the models it loads (cgpt runs, HF folders)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from paths import EVAL_FIXTURES

from cgpt.core.errors import CgptError
from cgpt.data.tokenize.tokenizer import save_tokenizer, tokenizer_sha256, train_tokenizer
from cgpt.eval.downstream import evaluate_tasks
from cgpt.eval.models import CgptScorer, HFScorer, cgpt_eval_model, load_eval_model
from cgpt.eval.scoring import TokenRequest, build_rows, score_requests
from cgpt.export.hf import build_hf_model, export_hf
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig
from cgpt.train.checkpoint import save_model_dir

FIXTURES = EVAL_FIXTURES
TEXTS = [line for f in sorted(FIXTURES.glob("*/*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=600, min_frequency=1)


def _model(vocab: int, n_positions: int = 128, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(ModelConfig(n_layer=2, d_model=48, n_head=4, d_ffn=96, vocab_size=vocab, n_positions=n_positions))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def _reference(model: GPT, requests: list[TokenRequest], max_length: int) -> list[tuple[float, bool]]:
    """The harness's computation, one request at a time: full logits, fp32 log-softmax, last n positions."""
    out = []
    with torch.no_grad():
        for r in requests:
            inp = torch.tensor([([*r.context, *r.continuation])[-(max_length + 1) :][:-1]])
            logp = F.log_softmax(model(inp).float(), dim=-1)[0, -len(r.continuation) :]
            cont = torch.tensor(r.continuation)
            out.append((float(logp.gather(-1, cont[:, None]).sum()), bool((logp.argmax(-1) == cont).all())))
    return out


def _random_requests(vocab: int, seed: int = 0) -> list[TokenRequest]:
    g = torch.Generator().manual_seed(seed)

    def rnd(n: int) -> list[int]:
        return torch.randint(0, vocab, (n,), generator=g).tolist()

    reqs = []
    for doc in range(12):
        ctx = rnd(int(torch.randint(1, 90, (1,), generator=g)))
        n_choices = 1 + doc % 4
        conts = [rnd(int(torch.randint(1, 12, (1,), generator=g))) for _ in range(n_choices)]
        if doc % 3 == 0 and n_choices > 1:  # choices sharing their first tokens
            conts = [conts[0][:2] + c for c in conts]
        if doc % 5 == 0:  # multiple inputs: different contexts, one continuation
            reqs.extend(TokenRequest(ctx + rnd(3), conts[0], doc) for _ in range(2))
            continue
        reqs.extend(TokenRequest(ctx, c, doc) for c in conts)
    return reqs


@pytest.mark.parametrize("max_length", [128, 40])  # 40: most requests are left-truncated
@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_scores_equal_the_direct_computation(max_length, share, batch_size):
    model = _model(300, n_positions=128)
    reqs = _random_requests(300)
    got = score_requests(
        CgptScorer(model, device=torch.device("cpu"), max_length=max_length),
        reqs,
        batch_size=batch_size,
        share_context=share,
    )
    ref = _reference(model, reqs, max_length)
    assert max(abs(a[0] - b[0]) for a, b in zip(got, ref)) <= 1e-4
    assert [a[1] for a in got] == [b[1] for b in ref]


def test_rows_share_the_context_once():
    reqs = [TokenRequest([1, 2, 3, 4], [5, 6], 0), TokenRequest([1, 2, 3, 4], [7], 0), TokenRequest([9, 9], [8], 1)]
    rows = build_rows(reqs, 100, share_context=True)
    shared = [r for r in rows if r.shared]
    assert len(shared) == 1 and shared[0].tokens == [1, 2, 3, 4, 5, 4]  # prefix [1,2,3] + [4,5] + [4]
    assert shared[0].positions == [0, 1, 2, 3, 4, 3] and shared[0].segments == [0, 0, 0, 1, 1, 2]
    assert len(build_rows(reqs, 100, share_context=False)) == 3


def test_greedy_flag_on_a_model_that_copies(tok):
    """A continuation made of the model's own argmax tokens is greedy; a perturbed one is not."""
    model = _model(300)
    ctx = [5, 6, 7]
    with torch.no_grad():
        seq = model.generate(torch.tensor([ctx]), 4)[0].tolist()
    greedy = seq[3:]
    other = greedy[:-1] + [(greedy[-1] + 1) % 300]
    got = score_requests(
        CgptScorer(model, device=torch.device("cpu")), [TokenRequest(ctx, greedy, 0), TokenRequest(ctx, other, 0)]
    )
    assert got[0][1] is True and got[1][1] is False and got[0][0] > got[1][0]


def test_hf_backend_equals_cgpt_backend(tok):
    model = _model(tok.get_vocab_size(), n_positions=512)
    hf = build_hf_model(model.state_dict(), model.config, eos_token_id=tok.token_to_id("<|endoftext|>"))
    reqs = _random_requests(tok.get_vocab_size(), seed=3)
    scorer = HFScorer(hf, device=torch.device("cpu"))
    assert scorer.supports_shared_context
    a = score_requests(scorer, reqs, batch_size=8)
    b = score_requests(CgptScorer(model, device=torch.device("cpu")), reqs, batch_size=8, share_context=False)
    assert max(abs(x[0] - y[0]) for x, y in zip(a, b)) <= 1e-4 and [x[1] for x in a] == [y[1] for y in b]
    hf_eager = build_hf_model(model.state_dict(), model.config, eos_token_id=0, attn_implementation="eager")
    c = score_requests(HFScorer(hf_eager, device=torch.device("cpu")), reqs, batch_size=8)
    assert max(abs(x[0] - y[0]) for x, y in zip(c, b)) <= 1e-4


def test_evaluate_tasks_on_fixtures_shared_equals_plain(tok):
    em = cgpt_eval_model(_model(tok.get_vocab_size(), n_positions=1024), tok)
    kw = dict(num_fewshot=(0, 2), data=FIXTURES, progress=False, bootstrap_iters=200)
    a = evaluate_tasks(em, **kw)
    b = evaluate_tasks(em, share_context=False, batch_size=3, **kw)
    assert [(r.task, r.num_fewshot) for r in a.tasks] == [(t, k) for t in a.settings["tasks"] for k in (0, 2)]
    for ra, rb in zip(a.tasks, b.tasks):
        assert ra.n_docs == rb.n_docs > 0 and ra.acc == rb.acc and ra.acc_norm == rb.acc_norm
        for da, db in zip(ra.docs, rb.docs):
            assert max(abs(x - y) for x, y in zip(da.loglikelihoods, db.loglikelihoods)) <= 1e-4
    lam = a.get("lambada_openai", 0)
    assert lam.perplexity is not None and lam.perplexity_stderr is not None and lam.acc_norm is None
    assert a.get("winogrande", 0).acc_norm is None and a.get("piqa", 0).acc_norm is not None


def test_limit_and_missing_splits(tok, tmp_path):
    em = cgpt_eval_model(_model(tok.get_vocab_size(), n_positions=1024), tok)
    r = evaluate_tasks(em, ["arc_easy"], [0], data=FIXTURES, limit=3, progress=False)
    assert r.get("arc_easy", 0).n_docs == 3 and [d.doc_index for d in r.get("arc_easy", 0).docs] == [0, 1, 2]
    (tmp_path / "piqa").mkdir()
    (tmp_path / "piqa" / "validation.jsonl").write_text((FIXTURES / "piqa" / "validation.jsonl").read_text())
    with pytest.raises(CgptError) as ei:
        evaluate_tasks(em, ["piqa", "openbookqa"], [0, 5], data=tmp_path, progress=False)
    msg = str(ei.value)
    assert "piqa/train.jsonl" in msg and "openbookqa/test.jsonl" in msg and "openbookqa/train.jsonl" in msg
    assert "\n" not in msg


def test_results_save_and_metrics(tok, tmp_path):
    em = cgpt_eval_model(_model(tok.get_vocab_size(), n_positions=1024), tok)
    r = evaluate_tasks(em, ["piqa"], [0], data=FIXTURES, progress=False, keep_prompts=True)
    r.save(tmp_path)
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["results"][0]["task"] == "piqa" and "docs" not in summary["results"][0]
    lines = (tmp_path / "samples" / "piqa_0shot.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 5 and first["requests"][0][0].startswith("Question: ") and len(first["loglikelihoods"]) == 2
    m = r.get("piqa", 0).metrics()
    assert set(m) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n_docs"}
    assert r.flat_metrics()["downstream.piqa.0shot.acc"] == m["acc"]


# ------------------------------------------------------------------------------------------ loading


@pytest.fixture(scope="module")
def project(tok, tmp_path_factory):
    """A project with data/tokens/tokenizer.json, runs/r/model and runs/r/hf as the pipeline writes them."""
    root = tmp_path_factory.mktemp("proj")
    (root / "data" / "tokens").mkdir(parents=True)
    tj = save_tokenizer(tok, root / "data" / "tokens")
    model = _model(tok.get_vocab_size(), n_positions=256)
    meta = {"step": 1, "seq_len": 64, "tokenizer_sha256": tokenizer_sha256(tok)}
    save_model_dir(root / "runs" / "r" / "model", model.state_dict(), model.config, meta)
    export_hf(
        model.state_dict(),
        model.config,
        root / "runs" / "r" / "hf",
        tokenizer_json=tj,
        eos_token_id=tok.token_to_id("<|endoftext|>"),
    )
    return root, model


def test_load_run_model_and_hf_folders_score_alike(project):
    root, _ = project
    run = root / "runs" / "r"
    models = [load_eval_model(p, device="cpu") for p in (run, run / "model", run / "hf")]
    assert [type(m.scorer).__name__ for m in models] == ["CgptScorer", "CgptScorer", "HFScorer"]
    assert all(m.max_length == 256 for m in models)
    res = [evaluate_tasks(m, ["arc_easy", "winogrande"], [0], data=FIXTURES, progress=False) for m in models]
    for task in ("arc_easy", "winogrande"):
        lls = [[ll for d in r.get(task, 0).docs for ll in d.loglikelihoods] for r in res]
        for other in lls[1:]:
            assert max(abs(a - b) for a, b in zip(lls[0], other)) <= 1e-4


def test_tokenizer_falls_back_to_the_project_and_is_checked(project, tmp_path, tok):
    root, model = project
    hf_tok = root / "runs" / "r" / "hf" / "tokenizer.json"
    moved = tmp_path / "tokenizer.json"
    hf_tok.rename(moved)
    try:
        assert load_eval_model(root / "runs" / "r", device="cpu").encoder.encode_batch(["Hello"])[0]
    finally:
        moved.rename(hf_tok)
    other = train_tokenizer(["something else entirely " * 20], vocab_size=300, min_frequency=1)
    wrong = save_tokenizer(other, tmp_path)
    with pytest.raises(CgptError, match="differs from the .* that .* was trained with"):
        load_eval_model(root / "runs" / "r", tokenizer=wrong, device="cpu")


def test_not_a_model_is_one_line(tmp_path):
    with pytest.raises(CgptError, match="not a model: expected a run folder"):
        load_eval_model(tmp_path, device="cpu")


def test_hf_tokenizer_that_adds_bos_is_used_like_the_harness(project):
    """tok_encode: the tokenizer's own special tokens, but none for a string already starting with BOS."""
    from transformers import AutoTokenizer

    from cgpt.eval.encoding import HFEncoder, encode_pairs

    root, _ = project
    tok = AutoTokenizer.from_pretrained(str(root / "runs" / "r" / "hf"), add_bos_token=True)
    bos = tok.bos_token_id
    enc = HFEncoder(tok)
    plain = tok.encode("Hello world", add_special_tokens=False)
    assert enc.encode_batch(["Hello world"]) == [[bos, *plain]]
    assert enc.encode_batch(["<|endoftext|>Hello world"]) == [[bos, *plain]]
    ((ctx, cont),) = encode_pairs(enc, [("Hello", " world")])
    assert ctx[0] == bos and ctx + cont == [bos, *plain]
