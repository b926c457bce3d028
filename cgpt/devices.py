"""Which torch device a setting names: one rule for training, evaluation and the benchmarks."""

from __future__ import annotations

import torch

from cgpt.core.errors import CgptError


def resolve_device(name: str, *, setting: str = "train.device", fix: str = "use device: auto or cpu") -> str:
    """``auto``: CUDA when torch sees a GPU, else the CPU; a CUDA device (``cuda``, ``cuda:1``) only
    when one is available, else one line naming ``setting`` and the ``fix``. (A caller that needs a
    :class:`torch.device` wraps the result.)"""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CgptError(f"{setting} = {name!r} but no CUDA device is available; {fix}")
    return name
