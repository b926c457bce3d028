"""Scaling laws for a model family: fit loss vs compute, forecast the next member with a prediction
interval, flag a member that lands outside it, and predict its task accuracies (two-step method).

The public API, importable from here (loaded lazily, so that importing one of its modules, e.g. the
FLOPs count, does not pull in scipy/pandas/matplotlib):

* :func:`fit_power_law` → :class:`PowerLawFit` — ``L(C) = a·C^b + c`` or ``a·C^b`` (``power_law``)
* :func:`predict_loss` → :class:`LossPrediction`; :func:`check_member` → :class:`MemberCheck` (``prediction``)
* :func:`fit_accuracy_sigmoid` → :class:`SigmoidFit`; :func:`predict_accuracy` → :class:`AccuracyPrediction`
  (``accuracy``); :data:`CHANCE_ACCURACY`
* :class:`Member`, :func:`forecast_member` → :class:`MemberForecast`, :func:`compare_accuracies`
  → :class:`AccuracyComparison`, :func:`fit_loss_law`, :func:`fit_accuracy_laws` (``next_member``)
* :func:`training_flops`, :func:`preset_training_flops` (``compute``)
* tables (``tables``) and figures (``plots``, incl. :func:`plot_mup_transfer`)
* the card's own law: :class:`CardSelection`, :func:`fit_card`, :func:`leave_out` (``card_law``)

See ``docs/scaling.md`` for the forms, the fitting and interval methods, and the FLOPs convention.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "power_law": ["PowerLawFit", "fit_power_law", "choose_form"],
    "prediction": ["LossPrediction", "MemberCheck", "predict_loss", "check_member"],
    "accuracy": ["CHANCE_ACCURACY", "SigmoidFit", "AccuracyPrediction", "fit_accuracy_sigmoid", "predict_accuracy"],
    "next_member": [
        "Member",
        "MemberForecast",
        "AccuracyComparison",
        "forecast_member",
        "compare_accuracies",
        "fit_loss_law",
        "fit_accuracy_laws",
    ],
    "compute": ["training_flops", "preset_training_flops"],
    "tables": ["coefficients_table", "points_table", "checks_table", "accuracy_table", "write_table"],
    "plots": ["plot_loss_vs_compute", "plot_accuracy_sigmoids", "plot_mup_transfer"],
    "card_law": ["CardSelection", "CardFit", "LeaveOut", "ReferenceLaw", "fit_card", "leave_out"],
    "rules": ["MIN_POINTS_SATURATING", "MIN_POINTS_FREE_FLOOR", "DEFAULT_LEVEL"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'cgpt.scaling' has no attribute {name!r}")
    return getattr(importlib.import_module(f"cgpt.scaling.{_WHERE[name]}"), name)
