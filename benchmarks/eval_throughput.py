"""Downstream-eval throughput: cgpt's scorer against lm-eval 0.4.13's own HF backend, same model, same run.

Both score the same (context, continuation) requests, built from the same documents, on the same
Hugging Face folder: lm-eval through ``HFLM.loglikelihood`` (its defaults, fp32, except an equal
``batch_size``), cgpt through :func:`cgpt.eval.encoding.encode_pairs` + :func:`score_requests`
(tokenization included on both sides). Per task the sides alternate (the order flips every
repetition); each task reports requests/s, the ratio cgpt/lm-eval in wall-clock time and in
process CPU time (steadier on a shared machine), and the largest |loglikelihood difference| as a
sanity check. The last lines project the whole suite (every document of each task) from the
measured per-task rates: the real suite is mostly HellaSwag.

The default model is a freshly exported random-init model of the Cerebras-GPT 111M shape (10 x 768,
12 heads, n_positions 2048) with the GPT-2 tokenizer from ../shared/gpt2-tokenizer (a trained
tokenizer when that folder is absent).

    python benchmarks/eval_throughput.py                # 111M shape, 16 docs/task, 0-shot, ~4 min on 2 cores
    python benchmarks/eval_throughput.py --model runs/default/hf --docs 50 --num-fewshot 5
    python benchmarks/eval_throughput.py --shape small --backends hf cgpt   # quick, both cgpt backends

Needs lm-eval (``pip install -e .[crosscheck]``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from cgpt.eval.downstream import build_requests
from cgpt.eval.encoding import encode_pairs
from cgpt.eval.models import cgpt_eval_model, load_eval_model
from cgpt.eval.scoring import TokenRequest, score_requests
from cgpt.eval.taskdata import TaskData
from cgpt.eval.tasks import TASK_REGISTRY, get_task

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHAPES = {"111m": "cerebras-111m", "small": "cpu-small"}


def _tokenizer():
    from cgpt.data.tokenize.tokenizer import load_tokenizer, train_tokenizer

    if (SHARED / "gpt2-tokenizer" / "vocab.json").is_file():
        return load_tokenizer(SHARED / "gpt2-tokenizer"), "GPT-2 BPE (shared/gpt2-tokenizer)"
    texts = [line for f in sorted((REPO / "tests" / "fixtures" / "eval").glob("*/*.jsonl")) for line in f.open()]
    return train_tokenizer(texts * 4, vocab_size=8192, min_frequency=1), "trained BPE (no shared/gpt2-tokenizer)"


def _export_random(shape: str, out: Path) -> Path:
    from dataclasses import replace

    from cgpt.data.tokenize.tokenizer import save_tokenizer
    from cgpt.export.hf import export_hf
    from cgpt.model.gpt import GPT
    from cgpt.presets import get_preset

    tok, what = _tokenizer()
    cfg = replace(get_preset(SHAPES[shape]).model, vocab_size=tok.get_vocab_size())
    if shape == "small":
        cfg = replace(cfg, n_positions=2048)
    torch.manual_seed(0)
    model = GPT(cfg)
    print(
        f"model: random-init {SHAPES[shape]} shape ({cfg.n_layer} x {cfg.d_model}, {cfg.n_head} heads, "
        f"{model.num_params() / 1e6:.0f}M params), tokenizer {what}"
    )
    tj = save_tokenizer(tok, out)
    eos = tok.token_to_id("<|endoftext|>")
    return export_hf(model.state_dict(), cfg, out / "hf", tokenizer_json=tj, eos_token_id=eos)


def _requests(data: TaskData, task: str, docs: int, k: int) -> list[list[tuple[str, str]]]:
    t = get_task(task)
    pool = data.load(t, t.fewshot_split) if k else None
    return build_requests(t, data.load(t, t.eval_split, docs), pool, k)


def _suite_requests(data: TaskData, tasks: list[str]) -> dict[str, int]:
    """Requests of each task's whole evaluation split at 0 shots (one per choice)."""
    out = {}
    for name in tasks:
        t = get_task(name)
        out[name] = sum(1 if t.output_type == "loglikelihood" else len(d.choices) for d in data.load(t, t.eval_split))
    return out


def _run_lm_eval(lm, per_doc) -> tuple[float, float, list[float]]:
    """(wall s, process CPU s, loglikelihoods)."""
    from lm_eval.api.instance import Instance

    inst = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(p for d in per_doc for p in d)]
    t0, c0 = time.perf_counter(), time.process_time()
    out = lm.loglikelihood(inst, disable_tqdm=True)
    return time.perf_counter() - t0, time.process_time() - c0, [ll for ll, _ in out]


def _run_cgpt(model, per_doc, batch_size: int) -> tuple[float, float, list[float]]:
    t0, c0 = time.perf_counter(), time.process_time()
    flat = [(d, pair) for d, pairs in enumerate(per_doc) for pair in pairs]
    enc = encode_pairs(model.encoder, [p for _, p in flat])
    reqs = [TokenRequest(c, x, d) for (d, _), (c, x) in zip(flat, enc)]
    out = score_requests(model.scorer, reqs, batch_size=batch_size)
    return time.perf_counter() - t0, time.process_time() - c0, [ll for ll, _ in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a Hugging Face GPT2LMHeadModel folder (default: a random export)")
    ap.add_argument("--shape", default="111m", choices=list(SHAPES), help="shape of the random default model")
    ap.add_argument("--data", default=None, help="task data (default: ../shared/eval-data, else the test fixtures)")
    ap.add_argument("--tasks", nargs="+", default=list(TASK_REGISTRY), choices=list(TASK_REGISTRY))
    ap.add_argument("--docs", type=int, default=16, help="documents per task")
    ap.add_argument("--num-fewshot", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16, help="requests per forward, both sides")
    ap.add_argument(
        "--backends",
        nargs="+",
        default=["hf"],
        choices=["hf", "cgpt"],
        help="cgpt scorer on the transformers model (hf) and/or on cgpt's GPT imported from it (cgpt)",
    )
    ap.add_argument("--reps", type=int, default=1, help="repetitions per task (median reported)")
    args = ap.parse_args()
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        sys.exit("lm-eval is not installed: pip install -e .[crosscheck]")
    fixtures = REPO / "tests" / "fixtures" / "eval"
    default_data = SHARED / "eval-data" if (SHARED / "eval-data" / "piqa").is_dir() else fixtures
    data = TaskData(Path(args.data) if args.data else default_data)
    with tempfile.TemporaryDirectory() as td:
        folder = Path(args.model) if args.model else _export_random(args.shape, Path(td))
        lm = HFLM(pretrained=str(folder), batch_size=args.batch_size, device="cpu", dtype="float32")
        ours = {"hf": load_eval_model(folder, device="cpu")}
        if "cgpt" in args.backends:
            from cgpt.data.tokenize.tokenizer import load_tokenizer
            from cgpt.export.hf import import_hf
            from cgpt.model.gpt import GPT

            cfg, state = import_hf(folder)
            net = GPT(cfg)
            net.load_state_dict(state)
            ours["cgpt"] = cgpt_eval_model(net, load_tokenizer(folder))
        print(
            f"data: {data.root}; {args.docs} docs/task, {args.num_fewshot}-shot, batch_size {args.batch_size}, "
            f"torch threads {torch.get_num_threads()}"
        )
        warm = [[("Hello there", " world")]]
        _run_lm_eval(lm, warm)
        for m in ours.values():
            _run_cgpt(m, warm, args.batch_size)
        sides = ["lm-eval", *args.backends]
        wall: dict[str, dict[str, float]] = {k: {} for k in sides}
        cpu: dict[str, dict[str, float]] = {k: {} for k in sides}
        n_req: dict[str, int] = {}
        print(
            f"{'task':15s} {'requests':>8s} {'lm-eval req/s':>14s}"
            + "".join(
                f" {'cgpt-' + b + ' req/s':>15s} {'ratio':>6s} {'cpu ratio':>9s} {'max|dll|':>9s}"
                for b in args.backends
            )
        )
        for task in args.tasks:
            per_doc = _requests(data, task, args.docs, args.num_fewshot)
            n_req[task] = sum(len(d) for d in per_doc)
            times: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
            diffs: dict[str, float] = {}
            for rep in range(args.reps):
                order = sides if rep % 2 == 0 else sides[::-1]  # alternate, so drift in machine load cancels
                ref_lls: list[float] = []
                got: dict[str, list[float]] = {}
                for side in order:
                    if side == "lm-eval":
                        w, c, ref_lls = _run_lm_eval(lm, per_doc)
                    else:
                        w, c, got[side] = _run_cgpt(ours[side], per_doc, args.batch_size)
                    times[side].append((w, c))
                for b in args.backends:
                    diffs[b] = max(abs(x - y) for x, y in zip(ref_lls, got[b]))
            for side in sides:
                wall[side][task] = statistics.median(t for t, _ in times[side])
                cpu[side][task] = statistics.median(c for _, c in times[side])
            n = n_req[task]
            print(
                f"{task:15s} {n:8d} {n / wall['lm-eval'][task]:14.1f}"
                + "".join(
                    f" {n / wall[b][task]:15.1f} {wall['lm-eval'][task] / wall[b][task]:6.2f}"
                    f" {cpu['lm-eval'][task] / cpu[b][task]:9.2f} {diffs[b]:9.1e}"
                    for b in args.backends
                ),
                flush=True,
            )
        total = {k: sum(wall[k].values()) for k in sides}
        total_cpu = {k: sum(cpu[k].values()) for k in sides}
        n = sum(n_req.values())
        print(
            f"{'all':15s} {n:8d} {n / total['lm-eval']:14.1f}"
            + "".join(
                f" {n / total[b]:15.1f} {total['lm-eval'] / total[b]:6.2f} {total_cpu['lm-eval'] / total_cpu[b]:9.2f}"
                f" {'':9s}"
                for b in args.backends
            )
        )
        # The real suite is mostly HellaSwag (40k of 68k requests): weight each task's measured rate by its size.
        suite = _suite_requests(data, args.tasks)
        for name, t in (("wall", wall), ("cpu", cpu)):
            proj = {k: sum(suite[task] * t[k][task] / n_req[task] for task in args.tasks) for k in sides}
            print(
                f"projected whole {args.num_fewshot}-shot suite ({sum(suite.values())} requests), {name} time on "
                f"this machine: lm-eval {proj['lm-eval'] / 3600:.2f} h"
                + "".join(
                    f", cgpt-{b} {proj[b] / 3600:.2f} h ({proj['lm-eval'] / proj[b]:.2f}x)" for b in args.backends
                )
            )


if __name__ == "__main__":
    main()
