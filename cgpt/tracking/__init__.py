"""MLflow tracking: where runs live, how they are named, and what each part of the project records.

* :mod:`cgpt.tracking.params` — the ``tracking:`` section of params.yaml (no MLflow: every stage's
  params loading imports it).
* :mod:`cgpt.tracking.store` — is the store there? probed in seconds before a stage works; the
  fall-back store or a one-line stop (``tracking.on_unavailable``); MLflow's HTTP retries bounded.
* :mod:`cgpt.tracking.runs` — the store, :class:`~cgpt.tracking.runs.Tracker` (which keeps what it
  logs while the store is away), a model's run (found by its configuration's key), the data
  stages' runs, parent runs found by their key, provenance tags.
* :mod:`cgpt.tracking.registry` — the exported model: one logged model and one registered version
  per weights digest, whatever was killed before (the export stage's one logging path).
* :mod:`cgpt.tracking.serving` — how that model is saved so it serves: the params schema, the
  pyfunc loader :mod:`cgpt.tracking.cgpt_textgen` shipped in it, its licence.
* :mod:`cgpt.tracking.aliases` — the registration policy: ``@champion``, ``@latest-exp``,
  ``cgpt promote``.
* :mod:`cgpt.tracking.family` — the family's parent run, its members' runs as children, and what is
  recorded on them (forecasts, outcomes, the fit).
* :mod:`cgpt.tracking.sweep` — the µP sweep's parent run, its trials' runs, the chosen values.

This package imports nothing itself (MLflow is imported by the modules that talk to it, and only
when they do), so importing :mod:`cgpt.tracking.params` stays cheap.
"""
