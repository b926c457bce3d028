"""The µP sweep: short trials on a proxy width, the best by validation loss, and the transfer check.

Under µP the best learning rate, init std and output multiplier of a model of width d are those
of its base width (m = d / base = 1), so they can be tuned on a cheap proxy and reused by every
µP member of the family (spec section 1.4; Yang et al. 2022, "Tensor Programs V"). This package
is the computation; ``flows/mup_sweep.py`` fans the trials out as Prefect tasks.

1. :mod:`cgpt.family.sweep.plan`: the search's trials on the proxy (the grid or seeded draws),
   the transfer check's trials across widths, each trial's params and the keys.
2. :mod:`cgpt.family.sweep.trials`: one trial, a real training run in ``runs/sweep/<trial-id>/``
   (reused once finished), and its result.
3. :mod:`cgpt.family.sweep.report`: the choice (lowest final validation loss, ties to the smaller
   values), the transfer check's summary, the tables, figures and the markdown report.
4. :mod:`cgpt.family.sweep.params_file`: ``family.mup.lr``, ``init_std``, ``output_mult`` into
   params.yaml, a round trip that keeps every comment and every other key, written atomically.

Its MLflow part (the sweep's parent run, the trials' child runs) is :mod:`cgpt.tracking.sweep`.

Outputs (``family/mup/``, deterministic bytes for the same params, data and threads per trial):
``sweep.csv``/``.md`` (every search trial), ``chosen.json``, ``transfer.csv``/``.md``,
``transfer.json`` (each width's optimum) and ``transfer.png``/``.svg``.
"""
