"""Run the real lm-evaluation-harness 0.4.13 offline on local jsonl task data (for the cross-check tests).

Each task is the stock YAML ``include``d unchanged (prompts, metrics, ``!function`` helpers), with
only the data location overridden: ``dataset_path: json`` and ``data_files`` pointing at
``<data>/<task>/<split>.jsonl`` (shared/spec/lm-eval-procedures.md section 3.2). Splits that the
folder lacks are set to null; the pool rule (train, else validation, else test) is unaffected
for the splits that exist.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

SPLIT_KEYS = {"train": "training_split", "validation": "validation_split", "test": "test_split"}
STOCK = {
    "hellaswag": "hellaswag/hellaswag.yaml",
    "piqa": "piqa/piqa.yaml",
    "winogrande": "winogrande/default.yaml",
    "lambada_openai": "lambada/lambada_openai.yaml",
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "openbookqa": "openbookqa/openbookqa.yaml",
}


def write_local_tasks(data: Path, out: Path, tasks: list[str], *, splits: dict[str, list[str]] | None = None) -> None:
    """``<out>/<task>_local.yaml`` for each task; ``splits`` limits which split files are given."""
    import lm_eval

    tasks_dir = Path(lm_eval.__file__).parent / "tasks"
    out.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        present = [s for s in SPLIT_KEYS if (data / task / f"{s}.jsonl").is_file()]
        if splits and task in splits:
            present = [s for s in present if s in splits[task]]
        cfg: dict[str, Any] = {
            "include": str(tasks_dir / STOCK[task]),
            "task": f"{task}_local",
            "tag": [],
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {s: str(data / task / f"{s}.jsonl") for s in present}},
        }
        stock = yaml.safe_load((tasks_dir / STOCK[task]).read_text().replace("!function", "")) or {}
        if "include" in stock:  # arc_challenge includes arc_easy
            stock = {**yaml.safe_load((tasks_dir / "arc" / stock["include"]).read_text()), **stock}
        for split, key in SPLIT_KEYS.items():
            if stock.get(key) is not None and split not in present:
                cfg[key] = None
        (out / f"{task}_local.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def run_lm_eval(
    model_dir: Path,
    data: Path,
    tasks: list[str],
    num_fewshot: int,
    *,
    work: Path,
    limit: int | None = None,
    batch_size: int = 32,
    bootstrap_iters: int = 1000,
    splits: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """``simple_evaluate`` with the HF backend: {"results": {task: metrics}, "samples": {task: [doc samples]}}."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HOME", str(work / "hf_home"))
    os.environ.setdefault("DISABLE_MULTIPROC", "1")  # the bootstrap's single-process path draws the same numbers
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    write_local_tasks(data, work / "tasks", tasks, splits=splits)
    lm = HFLM(pretrained=str(model_dir), batch_size=batch_size, device="cpu", dtype="float32")
    tm = TaskManager(include_path=str(work / "tasks"), include_defaults=False)
    res = simple_evaluate(
        model=lm,
        tasks=[f"{t}_local" for t in tasks],
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=tm,
        bootstrap_iters=bootstrap_iters,
        log_samples=True,
    )
    return {
        "results": {k.removesuffix("_local"): v for k, v in res["results"].items()},
        "samples": {k.removesuffix("_local"): v for k, v in res["samples"].items()},
    }
