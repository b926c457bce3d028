"""Model families: members trained smallest to largest, a scaling law fitted as they come in, each
next member's loss (and task accuracy) forecast before it trains, and the muP sweep whose chosen
values every muP member uses. See ``docs/family.md``.

* :mod:`cgpt.family.params` — the ``family:`` section of params.yaml (validated with the rest).
* :mod:`cgpt.family.members` — each member's derived params, size, tokens, steps and training FLOPs.
* :mod:`cgpt.family.points` — the point file a member's evaluation writes (``family/points/<name>.json``).
* :mod:`cgpt.family.law` — the ``scaling`` stage's work: the fit, the forecasts, the table, the plots.
* :mod:`cgpt.family.forecast` — the family flow's forecast before a member trains, and its check after.
* :mod:`cgpt.family.sweep` — the muP sweep: trials on a proxy width, the choice, the transfer check.

Their MLflow side lives with the rest of the tracking: :mod:`cgpt.tracking.family` (the family's
parent run and its children, the members' model runs) and :mod:`cgpt.tracking.sweep`.
"""
