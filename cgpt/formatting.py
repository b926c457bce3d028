"""Numbers as people read them, shared by ``cgpt check``, ``cgpt presets`` and the exported model card."""

from __future__ import annotations


def human_count(x: float) -> str:
    """A count with two decimals and a unit: ``1234567`` -> ``"1.23M"``, ``2.5e11`` -> ``"250.00B"``.

    Units T, B, M, K (powers of 1000); below 1000 the plain rounded number (``"999"``).
    """
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"
