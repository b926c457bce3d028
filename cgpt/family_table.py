"""Temporary alias of :mod:`cgpt.preset_table` for cgpt/train/perf.py, which another branch restructures.

Delete at merge, once cgpt/train/perf.py imports ``BYTES_BF16_MIXED, BYTES_FP32, GIB`` from cgpt.preset_table.
"""

from cgpt.preset_table import BYTES_BF16_MIXED, BYTES_FP32, GIB

__all__ = ["BYTES_BF16_MIXED", "BYTES_FP32", "GIB"]
