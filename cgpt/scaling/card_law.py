"""The Cerebras-GPT card's own scaling law, refitted with cgpt's code, and leave-one-out forecasts.

The card's points come from :mod:`cgpt.published` (nothing is retyped here): training FLOPs from its
evaluation-table column by default (what reproduces the published coefficients; ``flops="train"``
takes the training-table column and ``flops="cgpt"`` cgpt's own 6N + 12LTd count, see
:mod:`cgpt.scaling.compute`), Pile test cross-entropy from the 0-shot table (the Model Zoo copy,
``xent="zoo"``, which the spec's refit used) or the Hugging Face card (``xent="hf"``), accuracies
from the 0- or 5-shot table; ``mup=True`` takes the five µP rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cgpt import published
from cgpt.core.errors import ScalingError
from cgpt.presets import get_preset
from cgpt.scaling.accuracy import FloorChoice
from cgpt.scaling.compute import preset_training_flops
from cgpt.scaling.next_member import AccuracyComparison, Member, MemberForecast, compare_accuracies, forecast_member
from cgpt.scaling.power_law import FormChoice, PowerLawFit, fit_power_law
from cgpt.scaling.prediction import MemberCheck, check_member
from cgpt.scaling.rules import DEFAULT_LEVEL

XentSource = Literal["zoo", "hf"]
FlopsSource = Literal["eval", "train", "cgpt"]
#: The 13B target of the two-step accuracy prediction (mean absolute error over the seven tasks).
TARGET_MAE = 0.03

XENT_LABELS = {
    "zoo": "Pile test xent, Model Zoo README copy of the card (0-shot table)",
    "hf": "Pile test xent, Hugging Face card",
}
FLOPS_LABELS = {
    "eval": "training FLOPs, card's evaluation-table column",
    "train": "training FLOPs, card's training-table column",
    "cgpt": "training FLOPs, cgpt's (6N + 12LTd) x tokens",
}


@dataclass(frozen=True)
class ReferenceLaw:
    """A published or previously derived law ``L = (C/f0)^-beta + c`` (c = 0 and a given: a pure power law)."""

    label: str
    f0: float
    beta: float
    c: float
    source: str

    def predict(self, compute: float) -> float:
        return (compute / self.f0) ** (-self.beta) + self.c

    @property
    def a(self) -> float:
        return self.f0**self.beta

    @property
    def b(self) -> float:
        return -self.beta


def _pure(label: str, a: float, b: float, source: str) -> ReferenceLaw:
    return ReferenceLaw(label, f0=a ** (-1.0 / b), beta=-b, c=0.0, source=source)


_SPEC = "shared/spec/cerebras-gpt-recipe.md section 5"
#: Laws to print next to ours. The paper's is [U] in the spec (quoted by a secondary source, not
#: checked against the paper); the spec's refits are scipy ``curve_fit`` on the rounded card points
#: (evaluation-table FLOPs, Model Zoo xent), its pure power laws a log-log line on the same points.
REFERENCES: dict[bool, list[ReferenceLaw]] = {
    False: [
        ReferenceLaw(
            "paper [U]", published.PAPER_LAW["f0"], published.PAPER_LAW["b"], published.PAPER_LAW["c"], published.SOURCE
        ),
        ReferenceLaw("spec refit", 6.47e22, 0.0733, 0.501, _SPEC),
        _pure("spec pure power", 26.48, -0.05486, _SPEC),
    ],
    True: [
        ReferenceLaw("spec refit", 1.62e22, 0.0780, 0.612, _SPEC),
        _pure("spec pure power", 27.75, -0.05601, _SPEC),
    ],
}


@dataclass(frozen=True)
class CardSelection:
    """Which of the card's columns to use."""

    mup: bool = False
    xent: XentSource = "zoo"
    flops: FlopsSource = "eval"
    shots: int = 0

    def __post_init__(self) -> None:
        if self.mup and self.xent != "zoo":
            raise ScalingError("the card has one muP xent column; --xent hf applies to the SP models only")
        if self.xent not in XENT_LABELS or self.flops not in FLOPS_LABELS or self.shots not in (0, 5):
            raise ScalingError(f"unknown card selection {self}")

    @property
    def sizes(self) -> tuple[str, ...]:
        return published.MUP_SIZES if self.mup else published.SIZES

    def label(self) -> str:
        family = "Cerebras-GPT muP" if self.mup else "Cerebras-GPT SP"
        xent = "Pile test xent (muP rows)" if self.mup else XENT_LABELS[self.xent]
        return f"{family}: {xent} vs {FLOPS_LABELS[self.flops]}"

    def compute(self, size: str) -> float:
        if self.flops == "eval":
            return published.EVAL_FLOPS[size]
        if self.flops == "train":
            return published.TRAIN_TABLE_FLOPS[size]
        return preset_training_flops(get_preset(f"cerebras-{size}{'-mup' if self.mup else ''}"))

    def loss(self, size: str) -> float:
        if self.mup:
            return published.PILE_XENT_MUP[size]
        return (published.PILE_XENT_ZOO if self.xent == "zoo" else published.PILE_XENT_HF)[size]

    def members(self) -> list[Member]:
        return [
            Member(
                size,
                self.compute(size),
                self.loss(size),
                dict(published.card_row(size, mup=self.mup, shots=self.shots).acc),
            )
            for size in self.sizes
        ]

    def references(self) -> list[ReferenceLaw]:
        """The reference laws, comparable only on the evaluation-table FLOPs they were fitted on."""
        return REFERENCES[self.mup] if self.flops == "eval" else []


@dataclass
class CardFit:
    """Our fit of the card's points (the chosen form, plus the pure power law for comparison)."""

    selection: CardSelection
    fit: PowerLawFit
    pure: PowerLawFit
    references: list[ReferenceLaw]

    def to_dict(self) -> dict[str, Any]:
        return {
            "selection": vars(self.selection) | {"label": self.selection.label()},
            "fit": self.fit.to_dict(),
            "pure_power": self.pure.to_dict(),
            "references": [vars(r) | {"a": r.a, "b": r.b} for r in self.references],
        }


@dataclass
class LeaveOut:
    """One member predicted from all the others: its loss (with interval) and its task accuracies."""

    selection: CardSelection
    size: str
    forecast: MemberForecast
    check: MemberCheck
    accuracy: AccuracyComparison
    target_mae: float = TARGET_MAE

    @property
    def met_target(self) -> bool:
        return self.accuracy.mae <= self.target_mae

    def to_dict(self) -> dict[str, Any]:
        return {
            "selection": vars(self.selection) | {"label": self.selection.label()},
            "size": self.size,
            "forecast": self.forecast.to_dict(),
            "check": self.check.to_dict(),
            "accuracy": self.accuracy.to_dict(),
            "target_mae": self.target_mae,
            "met_target": self.met_target,
        }


def fit_card(
    selection: CardSelection = CardSelection(), *, form: FormChoice = "auto", sigma_known: float | None = None
) -> CardFit:
    """Fit the card's (FLOPs, xent) points with the same code the family flow uses."""
    members = selection.members()
    compute, loss, names = [m.compute for m in members], [m.loss for m in members], [m.name for m in members]
    fit = fit_power_law(compute, loss, form=form, names=names, sigma_known=sigma_known)
    pure = fit_power_law(compute, loss, form="power", names=names, sigma_known=sigma_known)
    return CardFit(selection, fit, pure, selection.references())


def leave_out(
    size: str,
    selection: CardSelection = CardSelection(),
    *,
    level: float = DEFAULT_LEVEL,
    form: FormChoice = "auto",
    floor: FloorChoice | float = "auto",
    sigma_known: float | None = None,
) -> LeaveOut:
    """Predict ``size`` from the other members: xent from their (FLOPs, xent), accuracies via the sigmoid."""
    size = size.lower()
    if size not in selection.sizes:
        raise ScalingError(
            f"--leave-out {size}: not a {'muP ' if selection.mup else ''}card size; "
            f"expected one of {', '.join(selection.sizes)}"
        )
    members = selection.members()
    target = next(m for m in members if m.name == size)
    others = [m for m in members if m.name != size]
    forecast = forecast_member(
        others, target.compute, name=size, level=level, form=form, floor=floor, sigma_known=sigma_known
    )
    return LeaveOut(
        selection,
        size,
        forecast,
        check_member(forecast.loss, target.loss),
        compare_accuracies(forecast, target.accuracy),
    )
