"""Evaluation: upstream cross-entropy over whole splits (xent.py) and the card's downstream tasks.

Downstream, scored exactly like lm-evaluation-harness 0.4.13 (docs/evaluation.md):
tasks.py (prompts), taskdata/ (task data: on disk, cached, fetched), fewshot.py, encoding.py (tokenization at
the boundary), scoring.py (shared-context loglikelihoods), models.py (what can be scored),
metrics.py, downstream.py (``evaluate_tasks``), results.py, table.py (the table beside the card),
command.py (``cgpt eval``). The params section of the evaluate stage: params.py.
"""
