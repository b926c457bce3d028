"""What the evaluate stage declares as DVC metrics: few keys, none repeating another metrics file's key,
so ``dvc exp show`` names every column by its key alone and stays one narrow table (issue 18)."""

from __future__ import annotations

from pathlib import Path

import yaml

from cgpt.stages.evaluate import headline_accuracy
from flows.experiment_report import better_when

REPO = Path(__file__).resolve().parents[3]


def test_the_headline_holds_the_7_task_average_per_shot_count():
    rows = {
        "0shot_acc": {"HS": 0.3, "avg": 0.41},
        "0shot_acc_norm": {"HS": 0.31},
        "5shot_acc": {"HS": 0.32, "avg": 0.42},
        "5shot_acc_norm": {"HS": 0.33},
    }
    assert headline_accuracy(rows) == {"avg_acc_0shot": 0.41, "avg_acc_5shot": 0.42}


def test_a_shot_count_with_a_skipped_task_has_no_average():
    assert headline_accuracy({"0shot_acc": {"HS": 0.3}, "0shot_acc_norm": {}}) == {}
    assert headline_accuracy({}) == {}


def test_the_experiment_report_calls_a_higher_average_better():
    assert better_when("runs/default/eval_metrics.json", "avg_acc_0shot") == "higher"
    assert better_when("runs/default/eval_metrics.json", "val_xent") == "lower"


def test_no_metric_key_repeats_across_the_root_metrics_files():
    """The root dvc.yaml's metrics files and the keys their writers give them (train: TrainSummary's
    METRIC_KEYS; evaluate: cross-entropy and the averages): no key in two files."""
    from cgpt.train.loop import TrainSummary

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    declared = {
        name: [next(iter(m)) if isinstance(m, dict) else m for m in stage.get("metrics", [])]
        for name, stage in stages.items()
    }
    assert declared == {
        **{name: [] for name in stages if name not in ("train", "evaluate")},
        "train": ["runs/${train.run_name}/train_metrics.json"],
        "evaluate": ["runs/${train.run_name}/eval_metrics.json"],
    }
    train_keys = set(TrainSummary.METRIC_KEYS) | {"diverged_at_step"}
    eval_keys = {"val_xent", "test_xent", "avg_acc_0shot", "avg_acc_5shot"}
    assert not train_keys & eval_keys


def test_every_plot_names_both_axes():
    """DVC labels an unlabelled axis by its field, or "y" for a chart of several files."""
    for plot in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]:
        ((name, spec),) = plot.items()
        assert spec.get("x_label") and spec.get("y_label") and spec["y_label"] != "y", name
