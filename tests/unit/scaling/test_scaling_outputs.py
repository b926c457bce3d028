"""Tables (csv + md) and figures (png + svg) are written headless and are not empty."""

import math

import numpy as np
import pandas as pd

from cgpt.scaling import (
    check_member,
    checks_table,
    coefficients_table,
    fit_power_law,
    plot_loss_vs_compute,
    plot_mup_transfer,
    points_table,
    predict_loss,
    write_table,
)

COMPUTE = np.geomspace(2.6e18, 2.3e22, 6)
LOSS = 47.0 * COMPUTE**-0.0733 + 0.5 + 0.004 * np.cos(np.arange(6))


def test_tables_are_written_as_csv_and_markdown(tmp_path):
    fit = fit_power_law(COMPUTE, LOSS, names=[f"m{i}" for i in range(6)])
    pred = predict_loss(fit, 1e23, name="next")
    tables = {
        "points": points_table(fit),
        "coefficients": coefficients_table({"fit": fit}),
        "checks": checks_table([check_member(pred, 1.55)]),
    }
    for stem, df in tables.items():
        csv, md = write_table(df, tmp_path, stem)
        assert csv.stat().st_size > 0 and md.stat().st_size > 0
        back = pd.read_csv(csv)
        assert list(back.columns) == list(df.columns) and len(back) == len(df)
        assert md.read_text().startswith("|")
    assert pd.read_csv(tmp_path / "points.csv")["resid"].abs().max() < 0.01


def test_loss_plot_with_prediction_and_actual(tmp_path):
    fit = fit_power_law(COMPUTE, LOSS)
    paths = plot_loss_vs_compute(
        fit, tmp_path / "fig" / "loss", predictions=[predict_loss(fit, 1e23)], actuals={"next": (1e23, 1.55)}
    )
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in paths[1].read_bytes()[:500]


def test_mup_transfer_plot(tmp_path):
    lrs = np.geomspace(1e-3, 3e-2, 6)
    curves = {
        width: [(lr, 3.0 + 0.2 * (math.log(lr / 6e-3)) ** 2 - 0.1 * i) for lr in lrs]
        for i, width in enumerate((256, 512, 1024))
    }
    curves[1024][-1] = (lrs[-1], float("nan"))  # a diverged run is marked, not drawn
    paths = plot_mup_transfer(curves, tmp_path / "mup_transfer")
    assert all(p.stat().st_size > 1000 for p in paths)
