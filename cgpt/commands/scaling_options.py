"""``cgpt scaling``'s options (argparse only: no numpy/scipy/pandas, so ``cgpt --help`` stays instant)."""

from __future__ import annotations

import argparse

from cgpt.scaling.rules import DEFAULT_LEVEL, MIN_POINTS_FREE_FLOOR, MIN_POINTS_SATURATING


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--card", action="store_true", help="fit the Cerebras-GPT card's (FLOPs, Pile test xent) points")
    src.add_argument("--points", metavar="CSV", help="fit your own points: columns name,compute,loss[,<task>...]")
    p.add_argument(
        "--xent",
        choices=["zoo", "hf"],
        default="zoo",
        help="card xent column: zoo = the 0-shot table (Model Zoo copy, default), hf = Hugging Face card",
    )
    p.add_argument("--mup", action="store_true", help="the card's five muP models instead of the seven SP models")
    p.add_argument(
        "--flops",
        choices=["eval", "train", "cgpt"],
        default="eval",
        help="card compute: eval = evaluation-table column (default), train = training-table column, "
        "cgpt = (6N + 12LTd) x tokens",
    )
    p.add_argument("--shots", type=int, choices=[0, 5], default=0, help="card accuracy table for --leave-out")
    p.add_argument("--leave-out", metavar="SIZE", help="predict this card member (e.g. 13b) from the others")
    p.add_argument(
        "--predict",
        metavar="FLOPS",
        type=float,
        action="append",
        default=[],
        help="with --points: forecast loss (and accuracies) at this compute; repeatable",
    )
    p.add_argument(
        "--form",
        choices=["auto", "saturating", "power", "loglinear"],
        default="auto",
        help=f"loss law (auto: pure power law below {MIN_POINTS_SATURATING} points, else saturating; "
        "its log-linear limit a + b·ln C when c runs to its lower bound)",
    )
    p.add_argument(
        "--floor",
        default="auto",
        help=f"accuracy sigmoid floor: auto (fitted from {MIN_POINTS_FREE_FLOOR} points on, else chance), "
        "fit, chance, or a number",
    )
    p.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="prediction interval level (default 0.95)")
    p.add_argument(
        "--sigma-known",
        type=float,
        default=None,
        help="known scatter of a member around the law (nats): normal-quantile intervals",
    )
    p.add_argument("--out", metavar="DIR", help="write tables (csv, md), plots (png, svg) and JSON here")
