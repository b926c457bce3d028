"""``cgpt scaling``: fit the card's law (``--card``) or your own points (``--points FILE.csv``), print the
coefficients with residuals next to the published ones, forecast a held-out member (``--leave-out``)
or new computes (``--predict``), and write tables, plots and JSON with ``--out DIR``.

:func:`cgpt.commands.scaling_options.add_arguments` and :func:`run` are all ``cgpt.cli`` needs; the logic
lives in the library (:mod:`cgpt.scaling.card_law`, :mod:`cgpt.scaling.next_member`), so the family
flow and the command compute the same numbers.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from cgpt.core.errors import ScalingError
from cgpt.core.fsutil import write_json_atomic
from cgpt.scaling.card_law import CardFit, CardSelection, LeaveOut, ReferenceLaw, fit_card, leave_out
from cgpt.scaling.next_member import Member, MemberForecast, forecast_member
from cgpt.scaling.power_law import PowerLawFit, fit_power_law
from cgpt.scaling.prediction import LossPrediction
from cgpt.scaling.tables import accuracy_table, coefficients_table, points_table, write_table


def _floor(value: str) -> str | float:
    if value in ("auto", "fit", "chance"):
        return value
    try:
        return float(value)
    except ValueError:
        raise ScalingError(f"--floor {value}: expected auto, fit, chance or a number") from None


def run(args: argparse.Namespace) -> None:
    if not 0 < args.level < 1:
        raise ScalingError(f"--level {args.level}: must be between 0 and 1")
    floor = _floor(args.floor)
    out = Path(args.out) if args.out else None
    if args.card:
        if args.predict:
            raise ScalingError("--predict goes with --points; with --card use --leave-out SIZE")
        sel = CardSelection(mup=args.mup, xent=args.xent, flops=args.flops, shots=args.shots)
        card_fit = fit_card(sel, form=args.form, sigma_known=args.sigma_known)
        print(format_card_fit(card_fit))
        lo = None
        if args.leave_out:
            lo = leave_out(
                args.leave_out, sel, level=args.level, form=args.form, floor=floor, sigma_known=args.sigma_known
            )
            print()
            print(format_leave_out(lo))
        if out is not None:
            paths = write_card_outputs(card_fit, lo, out)
            print(f"\nwrote {len(paths)} files to {out}")
        return
    if args.leave_out:
        raise ScalingError("--leave-out SIZE goes with --card; with --points use --predict FLOPS")
    if args.mup or args.xent != "zoo" or args.flops != "eval" or args.shots != 0:
        raise ScalingError("--mup, --xent, --flops and --shots select the card's columns; they go with --card")
    members = read_points(Path(args.points))
    fit = fit_power_law(
        [m.compute for m in members],
        [m.loss for m in members],
        form=args.form,
        names=[m.name for m in members],
        sigma_known=args.sigma_known,
    )
    print(f"{args.points}: {len(members)} points")
    print(format_fit(fit))
    print()
    print(_table_text(points_table(fit)))
    preds = []
    for c in args.predict:
        fc = forecast_member(members, c, level=args.level, form=args.form, sigma_known=args.sigma_known, floor=floor)
        preds.append(fc.loss)
        print()
        print(f"at {c:.4g} FLOPs: loss {_interval_text(fc.loss)}")
        if fc.accuracy:
            print(
                _table_text(accuracy_table(fc)[["task", "chance", "floor", "floor_mode", "predicted", "low", "high"]])
            )
    if out is not None:
        paths = write_table(points_table(fit), out, "points") + write_table(
            coefficients_table({"fit": fit}), out, "coefficients"
        )
        from cgpt.scaling.plots import plot_loss_vs_compute

        paths += plot_loss_vs_compute(fit, out / "loss_vs_compute", predictions=preds)
        write_json_atomic(out / "fit.json", {"fit": fit.to_dict(), "predictions": [p.to_dict() for p in preds]})
        print(f"\nwrote {len(paths) + 1} files to {out}")


def read_points(path: Path) -> list[Member]:
    """``name,compute,loss[,<task>...]`` rows; every extra numeric column is a task accuracy."""
    if not path.is_file():
        raise ScalingError(f"{path}: no such file (expected a CSV with columns name,compute,loss)")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"name", "compute", "loss"} <= set(rows[0]):
        raise ScalingError(f"{path}: expected a header with name,compute,loss (and optional task columns)")
    tasks = [c for c in rows[0] if c not in ("name", "compute", "loss")]
    members = []
    for i, r in enumerate(rows, start=2):
        try:
            acc = {t: float(r[t]) for t in tasks if r[t] not in ("", None)}
            members.append(Member(r["name"], float(r["compute"]), float(r["loss"]), acc))
        except (TypeError, ValueError):
            raise ScalingError(f"{path}:{i}: compute, loss and task columns must be numbers") from None
    return members


def _table_text(df: pd.DataFrame) -> str:
    """Console table: residuals/errors signed to 4 decimals, other numbers to 4 significant digits."""

    def fmt(signed: bool) -> Callable[[object], str]:
        def f(v: object) -> str:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return "-"
            if isinstance(v, float):
                return f"{v:+.4f}" if signed else f"{v:.4g}"
            return str(v)

        return f

    signed = {c: c.startswith(("resid", "error")) for c in df.columns}
    return df.to_string(index=False, formatters={c: fmt(signed[c]) for c in df.columns})


def _interval_text(p: LossPrediction) -> str:
    if p.has_interval:
        return f"{p.loss:.4f} [{p.level:.0%} PI {p.low:.4f}, {p.high:.4f}]"
    return f"{p.loss:.4f} (no interval: {p.note})"


def format_fit(fit: PowerLawFit) -> str:
    """The form, how it was chosen, the coefficients with standard errors and the residual scale."""
    head = {
        "saturating": "saturating L(C) = a·C^b + c",
        "power": "pure power law L(C) = a·C^b",
        "loglinear": "log-linear L(C) = a + b·ln C",
    }[fit.form]
    se = fit.stderr or {}

    def pm(key: str, value: float, spec: str) -> str:
        return f"{value:{spec}} ± {se[key]:{spec}}" if key in se else f"{value:{spec}} (no stderr)"

    lines = [f"form: {head} (least squares in nats, {fit.n_points} points, {fit.dof} residual dof)"]
    coeffs = [pm("a", fit.a, ".4g"), pm("b", fit.b, ".5f")]
    if fit.form == "saturating":
        coeffs.append(pm("c", fit.c, ".4f"))
    lines.append("  " + ", ".join(f"{k} = {v}" for k, v in zip("abc", coeffs)))
    f0_se = f" (×/÷ 10^{se['log10_f0']:.2f})" if "log10_f0" in se else ""
    tail = f" {'-' if fit.c < 0 else '+'} {abs(fit.c):.4f}" if fit.form == "saturating" else ""
    if fit.form != "loglinear":  # the paper's (f0, β) exist for the power forms only
        lines.append(f"  as the paper writes it: L = (C / {fit.f0:.4g})^-{fit.beta:.5f}{tail}{f0_se}")
    scale = f"{fit.sigma:.4f} nats" if fit.sigma is not None else "none"
    lines.append(f"  residual scale {scale}, max |residual| {max(map(abs, fit.residuals)):.4f} nats")
    lines += [f"  note: {n}" for n in fit.notes]
    return "\n".join(lines)


def _coefficients_text(fits: dict[str, PowerLawFit], refs: Sequence[ReferenceLaw]) -> str:
    df = coefficients_table(fits, refs)[["law", "form", "f0", "beta", "c", "a", "b", "max_abs_resid"]]
    df = df.rename(columns={"max_abs_resid": "max|resid|"})
    return _table_text(df)


def format_card_fit(cf: CardFit) -> str:
    sel = cf.selection
    lines = [f"{sel.label()}: {cf.fit.n_points} points", format_fit(cf.fit), ""]
    fits = {f"cgpt ({cf.fit.form})": cf.fit}
    if cf.fit.form != "power":
        fits["cgpt (power)"] = cf.pure
    lines.append(_coefficients_text(fits, cf.references))
    lines.append("")
    df = points_table(cf.fit, cf.references)
    df = df[["name", "compute", "loss", "fit", "resid"] + [f"resid {r.label}" for r in cf.references]]
    lines.append(_table_text(df.rename(columns={"compute": "FLOPs", "loss": "xent", "name": "size"})))
    if not cf.references:
        lines.append(
            f"(reference laws are fitted on the evaluation-table FLOPs; not comparable with --flops {sel.flops})"
        )
    return "\n".join(lines)


def format_leave_out(lo: LeaveOut) -> str:
    fc, chk = lo.forecast, lo.check
    fit = fc.loss_fit
    others = ", ".join(fit.names or [])
    lines = [
        f"leave out {lo.size}: forecast from {fit.n_points} members ({others})",
        format_fit(fit),
        f"Pile test xent at {fc.compute:.3g} FLOPs: predicted {_interval_text(fc.loss)}, card {chk.actual:.4f}: "
        f"error {chk.error:+.4f}, " + ("inside" if chk.inside else "OUTSIDE" if chk.inside is False else "not checked"),
        "",
        f"{lo.selection.shots}-shot accuracy from the predicted xent via Acc(xent) sigmoids fitted on the "
        f"{fit.n_points} members (ceiling 1; floor {_floor_words(fc)}); 'at card xent' uses the card's {lo.size} xent:",
    ]
    df = accuracy_table(fc, lo.accuracy)
    df["at card xent"] = [fc.accuracy_fits[t].predict(chk.actual) for t in df["task"]]
    df = df[["task", "chance", "floor", "floor_mode", "predicted", "low", "high", "at card xent", "actual", "error"]]
    df = df.rename(columns={"actual": "card", "low": "low*", "high": "high*"})
    lines.append(_table_text(df))
    lines += [f"  note: {t}: {n}" for t, f in fc.accuracy_fits.items() for n in f.notes]
    at_card = sum(abs(a - b) for a, b in zip(df["at card xent"], df["card"])) / len(df)
    verdict = "met" if lo.met_target else "MISSED"
    lines.append(
        f"MAE over {len(df)} tasks: {lo.accuracy.mae:.4f} (target <= {lo.target_mae}: {verdict}); "
        f"with the card's xent instead of the predicted one: {at_card:.4f}"
    )
    lines.append(
        "* low/high: accuracy at the ends of the xent prediction interval (the sigmoid's own error not included)"
    )
    return "\n".join(lines)


def _floor_words(fc: MemberForecast) -> str:
    modes = sorted({f.floor_mode for f in fc.accuracy_fits.values()})
    return "/".join(modes)


def write_card_outputs(cf: CardFit, lo: LeaveOut | None, out: Path) -> list[Path]:
    """Tables (csv + md), plots (png + svg) and ``card_fit.json`` / ``leave_out.json`` under ``out``."""
    from cgpt.scaling.plots import plot_accuracy_sigmoids, plot_loss_vs_compute

    paths = write_table(points_table(cf.fit, cf.references), out, "points")
    paths += write_table(
        coefficients_table({"cgpt": cf.fit, "cgpt (power)": cf.pure}, cf.references), out, "coefficients"
    )
    write_json_atomic(out / "card_fit.json", cf.to_dict())
    paths.append(out / "card_fit.json")
    title = cf.selection.label()
    paths += plot_loss_vs_compute(
        cf.fit, out / "loss_vs_compute", references=cf.references, title=title, ylabel="Pile test xent (nats/token)"
    )
    if lo is not None:
        fc = lo.forecast
        paths += write_table(accuracy_table(fc, lo.accuracy), out, "leave_out_accuracy")
        write_json_atomic(out / "leave_out.json", lo.to_dict())
        paths.append(out / "leave_out.json")
        paths += plot_loss_vs_compute(
            fc.loss_fit,
            out / "leave_out_loss",
            predictions=[fc.loss],
            actuals={lo.size: (fc.compute, lo.check.actual)},
            references=cf.references,
            title=f"leave out {lo.size}: {title}",
            ylabel="Pile test xent (nats/token)",
        )
        actual = {t: (lo.check.actual, a) for t, a in lo.accuracy.actual.items()}
        paths += plot_accuracy_sigmoids(
            fc.accuracy_fits,
            out / "leave_out_accuracy",
            predictions=fc.accuracy,
            actuals=actual,
            title=f"leave out {lo.size}: accuracy vs Pile test xent",
        )
    return paths
