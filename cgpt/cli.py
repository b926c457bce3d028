"""The ``cgpt`` command: one subcommand per pipeline stage, plus generate, presets, import-hf, check, summary, promote,
scaling, eval (alias score).

``cgpt evaluate`` is the pipeline's evaluate stage on the project's own model; ``cgpt eval`` scores
any model folder on the card's tasks (:mod:`cgpt.commands.eval`).

Stage subcommands call the same functions ``dvc repro`` runs (:mod:`cgpt.stages`) on the project
given by ``--project`` (default: the current directory), without DVC's bookkeeping (use
``dvc repro`` for reproducible runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cgpt.core.errors import CgptError
from cgpt.core.project import Project
from cgpt.core.runtime import run_main
from cgpt.stages import STAGES, stage_function


def _generate(args: argparse.Namespace) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise CgptError(f"{model_dir}: not a Hugging Face model folder (no config.json); pass runs/<name>/hf")
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    inputs = tokenizer(args.prompt, return_tensors="pt")
    sample = args.temperature > 0
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=args.max_new_tokens,
            do_sample=sample,
            temperature=args.temperature if sample else None,
            top_k=args.top_k if sample else None,
            num_beams=args.num_beams,
            no_repeat_ngram_size=args.no_repeat_ngram_size,
            pad_token_id=tokenizer.eos_token_id,
        )
    print(tokenizer.decode(out[0], skip_special_tokens=True))


def _presets(args: argparse.Namespace) -> None:
    from cgpt.preset_table import format_preset_table
    from cgpt.presets import PRESETS

    print(format_preset_table())
    print("\nCPU presets (vocabulary from the tokenizer; params shown for vocab 8192):")
    for p in PRESETS.values():
        if not p.family:
            m = p.model
            print(
                f"  {p.name:10s} {m.n_layer} x {m.d_model}, {m.n_head} heads, seq {p.recipe.seq_len}, "
                f"batch {p.recipe.batch_size}, {p.recipe.total_steps} steps - {p.description}"
            )


def _import_hf(args: argparse.Namespace) -> None:
    from cgpt.export.hf import import_hf_to_checkpoint

    path = import_hf_to_checkpoint(Path(args.src), Path(args.out))
    print(f"imported {args.src} -> {path}; set model.* to its shape and run the train stage to continue pretraining")


def _check(args: argparse.Namespace) -> None:
    """Validate params.yaml and show the run it describes, with every preset default resolved."""
    from cgpt.config import load_params
    from cgpt.resolved import describe_run
    from cgpt.stages.sources import check_stage_params
    from cgpt.summary import format_summary

    path = Path(args.params)
    params = load_params(path)
    if path.name == "params.yaml":
        check_stage_params(path.resolve().parent)  # the keys dvc.yaml reads must be spelt out
    print(f"{path}: ok")
    print(format_summary(describe_run(params, path.resolve().parent)))


def _summary(args: argparse.Namespace) -> None:
    """The last run at a glance; `dvc metrics show` has every number."""
    from cgpt.summary import format_summary, summary_rows

    print(format_summary(summary_rows(Project.at(args.project))))


def _promote(args: argparse.Namespace) -> None:
    """Point ``@champion`` at a registered version: the explicit move of the registration policy."""
    from cgpt.core.sections import Sections
    from cgpt.tracking.aliases import promote
    from cgpt.tracking.params import TrackingParams
    from cgpt.tracking.runs import client_for
    from cgpt.tracking.store import resolve_store

    class Tracking(Sections):
        tracking: TrackingParams = TrackingParams()

    project = Project.at(args.project)
    name = args.model or project.load(Tracking).tracking.registered_model
    if not name:
        raise CgptError("params.yaml: tracking.registered_model is null (no registered model); pass --model NAME")
    resolve_store(project.root, "error")  # never promote in the fallback store: the alias users load is on the server
    move = promote(client_for(project.root), name, args.version)
    print(f"{name} {move}; load it as models:/{name}@champion")


def _scaling(args: argparse.Namespace) -> None:
    from cgpt.commands.scaling import run

    run(args)


def _eval(args: argparse.Namespace) -> None:
    from cgpt.commands.eval import run_eval

    run_eval(args)


#: a stage whose name alone does not say enough (``evaluate`` beside ``eval``)
STAGE_HELP = {"evaluate": "run the evaluate stage on the project's model (what dvc repro runs); any model folder: eval"}
STAGE_DESCRIPTION = {
    "evaluate": "Run the pipeline's evaluate stage on the project's own model (runs/<train.run_name>/model): "
    "cross-entropy over the val/test splits and the card's 7 tasks, with params.yaml's evaluate: keys "
    "(limit: auto scores every document for a cerebras-* preset, the first 200 otherwise), writing the "
    "stage's outputs (runs/<name>/eval_*.json, runs/<name>/eval/). To score any other model folder "
    "(an export, a downloaded Cerebras-GPT) on the card's tasks: cgpt eval (alias cgpt score)."
}
STAGE_NOTE = (
    "The same function `dvc repro` runs, on the project given by --project, without DVC's bookkeeping "
    "(use `dvc repro` for reproducible runs)."
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cgpt", description="Cerebras-GPT recipe pipeline")
    sub = ap.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        sp = sub.add_parser(
            stage,
            help=STAGE_HELP.get(stage, f"run the {stage} stage (what dvc repro runs, without DVC's bookkeeping)"),
            description=f"{STAGE_DESCRIPTION.get(stage, f'Run the {stage} stage.')} {STAGE_NOTE}",
        )
        sp.add_argument("--project", default=".", help="project root (default: current directory)")
    g = sub.add_parser("generate", help="generate text with an exported Hugging Face folder")
    g.add_argument("prompt")
    g.add_argument("--model", required=True, help="exported folder, e.g. runs/default/hf")
    g.add_argument("--max-new-tokens", type=int, default=50)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-k", type=int, default=50)
    g.add_argument("--num-beams", type=int, default=1)
    g.add_argument("--no-repeat-ngram-size", type=int, default=2)
    g.add_argument("--seed", type=int, default=0)
    sub.add_parser("presets", help="print the Cerebras-GPT family table and the CPU presets")
    i = sub.add_parser("import-hf", help="import a GPT2LMHeadModel folder as a checkpoint the train stage resumes from")
    i.add_argument(
        "src", help="folder with config.json and model weights (e.g. a downloaded cerebras/Cerebras-GPT-111M)"
    )
    i.add_argument("--out", default="runs/default/checkpoints", help="checkpoint folder of the run to continue")
    c = sub.add_parser("check", help="validate params.yaml and print the resolved run")
    c.add_argument("params", nargs="?", default="params.yaml")
    pr = sub.add_parser(
        "promote",
        help="make a registered model version the champion (models:/<name>@champion)",
        description="Point the @champion alias of the project's registered model at VERSION, whatever the scores "
        "say (an export moves it by itself only when its val cross-entropy beats the champion's on the same data).",
    )
    pr.add_argument("version", help="the registered version number, e.g. 3")
    pr.add_argument("--model", help="registered model name (default: params.yaml's tracking.registered_model)")
    pr.add_argument("--project", default=".", help="project root (default: current directory)")
    sm = sub.add_parser("summary", help="a compact summary of the last pipeline run's metrics")
    sm.add_argument("--project", default=".", help="project root (default: current directory)")
    from cgpt.commands.scaling_options import add_arguments as add_scaling_arguments

    add_scaling_arguments(sub.add_parser("scaling", help="fit scaling laws: the card's (--card) or your points"))
    from cgpt.commands.eval import add_eval_parser

    add_eval_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command in STAGES:
        run_main(lambda: stage_function(args.command)(Project.at(args.project)))
        return
    handlers = {
        "generate": _generate,
        "presets": _presets,
        "import-hf": _import_hf,
        "check": _check,
        "summary": _summary,
        "promote": _promote,
        "scaling": _scaling,
        "eval": _eval,
    }
    run_main(lambda: handlers[args.command](args))


if __name__ == "__main__":
    main()
