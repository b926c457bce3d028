"""The card's own law refitted with cgpt's code, the leave-one-out forecast, and ``cgpt scaling``."""

import json
import subprocess
import sys

import pytest

from cgpt import published
from cgpt.cli import main
from cgpt.scaling import CardSelection, fit_card, leave_out
from cgpt.scaling.card_law import REFERENCES


def test_card_fit_reproduces_the_spec_refit():
    # Spec section 5: L = (f/f0)^-b + c on the rounded card points gives f0 = 6.47e22, b = 0.0733, c = 0.501
    # (|resid| <= 0.019). Our a·C^b + c maps as a = f0^beta, b = -beta.
    cf = fit_card(CardSelection())
    fit = cf.fit
    assert fit.form == "saturating" and fit.n_points == 7
    assert fit.f0 == pytest.approx(6.47e22, rel=0.001)
    assert fit.beta == pytest.approx(0.0733, abs=5e-5)
    assert fit.c == pytest.approx(0.501, abs=5e-4)
    assert fit.a == pytest.approx(fit.f0**fit.beta) and fit.b == -fit.beta
    assert max(map(abs, fit.residuals)) <= 0.019
    # The paper's [U] law (fitted on unrounded numbers) agrees with ours to within 0.002 nats at every member.
    paper = REFERENCES[False][0]
    assert paper.label == "paper [U]"
    assert all(abs(fit.predict(c) - paper.predict(c)) < 2e-3 for c in fit.compute)


def test_card_pure_power_law_is_the_spec_line_refitted_in_nats():
    pure = fit_card(CardSelection()).pure
    # Spec: 26.48·f^-0.05486, a least-squares line in log-log; ours minimises squared nats instead.
    assert pure.form == "power"
    assert pure.a == pytest.approx(26.48, rel=0.02) and pure.b == pytest.approx(-0.05486, rel=0.01)


def test_mup_fit_reproduces_the_spec_refit():
    fit = fit_card(CardSelection(mup=True)).fit
    assert fit.n_points == 5 and fit.form == "saturating"
    assert fit.f0 == pytest.approx(1.62e22, rel=0.002)
    assert fit.beta == pytest.approx(0.0780, abs=5e-5) and fit.c == pytest.approx(0.612, abs=5e-4)
    assert max(map(abs, fit.residuals)) <= 0.004


def test_hf_xent_and_other_flops_columns_fit():
    hf = fit_card(CardSelection(xent="hf")).fit
    assert hf.loss == [published.PILE_XENT_HF[s] for s in published.SIZES] and hf.form == "saturating"
    cg = fit_card(CardSelection(flops="cgpt"))
    assert cg.references == []  # the published laws are on the card's FLOPs, not comparable
    assert all(0.6 < c / published.EVAL_FLOPS[s] < 1.0 for c, s in zip(cg.fit.compute, published.SIZES))


def test_leave_out_13b():
    lo = leave_out("13b")
    fc = lo.forecast
    assert fc.loss_fit.n_points == 6 and fc.loss_fit.names == list(published.SIZES[:6])
    assert fc.loss.loss == pytest.approx(1.5967, abs=5e-4)
    assert lo.check.inside and lo.check.actual == published.PILE_XENT_ZOO["13b"]
    assert set(lo.accuracy.error) == set(published.TASKS)
    assert lo.accuracy.mae == pytest.approx(0.0174, abs=5e-4) and lo.met_target
    json.dumps(lo.to_dict(), allow_nan=False)  # strict JSON: what the DVC stage writes as metrics
    json.dumps(fit_card(CardSelection()).to_dict(), allow_nan=False)


def test_leave_out_floor_at_chance_is_much_worse():
    # Holding the floor at chance cannot fit ARC-c / OpenBookQA (small members below chance).
    assert leave_out("13b", floor="chance").accuracy.mae > 0.05


def test_cgpt_scaling_leave_out_prints_mae_and_writes_files(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "cgpt.cli", "scaling", "--card", "--leave-out", "13b", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "paper [U]" in run.stdout and "spec refit" in run.stdout
    assert "leave out 13b: forecast from 6 members" in run.stdout
    assert "MAE over 7 tasks: 0.017" in run.stdout and "target <= 0.03: met" in run.stdout
    for name in (
        "points.csv",
        "points.md",
        "coefficients.csv",
        "coefficients.md",
        "card_fit.json",
        "loss_vs_compute.png",
        "loss_vs_compute.svg",
        "leave_out.json",
        "leave_out_accuracy.csv",
        "leave_out_accuracy.md",
        "leave_out_accuracy.png",
        "leave_out_accuracy.svg",
        "leave_out_loss.png",
        "leave_out_loss.svg",
    ):
        assert (out / name).stat().st_size > 0, name
    assert "| spec refit" in (out / "coefficients.md").read_text()


def test_cgpt_scaling_mup_and_hf_in_process(capsys):
    main(["scaling", "--card", "--mup", "--leave-out", "2.7b"])
    text = capsys.readouterr().out
    assert "Cerebras-GPT muP" in text and "leave out 2.7b: forecast from 4 members" in text and "MAE over 7" in text
    main(["scaling", "--card", "--xent", "hf"])
    assert "Hugging Face card" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--card", "--mup", "--xent", "hf"], "error: the card has one muP xent column"),
        (["--card", "--leave-out", "20b"], "error: --leave-out 20b: not a card size"),
        (["--card", "--mup", "--leave-out", "13b"], "error: --leave-out 13b: not a muP card size"),
        (["--card", "--floor", "high"], "error: --floor high: expected auto, fit, chance or a number"),
        (["--points", "x.csv", "--mup"], "error: --mup, --xent, --flops and --shots select the card's columns"),
        (["--points", "missing.csv"], "error: missing.csv: no such file"),
    ],
)
def test_cgpt_scaling_user_errors_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["scaling", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith(message), err


def test_cgpt_scaling_with_own_points(tmp_path, capsys):
    csv = tmp_path / "family.csv"
    rows = ["name,compute,loss,hellaswag"]
    for s in published.SIZES[:5]:
        rows.append(
            f"{s},{published.EVAL_FLOPS[s]},{published.PILE_XENT_ZOO[s]},{published.ZERO_SHOT[s].acc['hellaswag']}"
        )
    csv.write_text("\n".join(rows) + "\n")
    main(["scaling", "--points", str(csv), "--predict", "6.3e21", "--out", str(tmp_path / "o")])
    text = capsys.readouterr().out
    assert "5 points" in text and "at 6.3e+21 FLOPs: loss 1.6" in text and "hellaswag" in text
    assert (tmp_path / "o" / "fit.json").stat().st_size > 0 and (tmp_path / "o" / "loss_vs_compute.svg").is_file()
