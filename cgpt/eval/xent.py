"""Upstream evaluation: next-token cross-entropy (nats/token) over whole splits.

As the recipe (spec section 4): the split is packed like the training data into non-overlapping
windows of seq_len + 1 tokens, every position is scored with full teacher forcing from the
window's start, and the result is the mean over all scored label tokens of the split. The last,
shorter window is scored too (the Model Zoo pads it and masks the padding: the same tokens count).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cgpt.errors import DataError
from cgpt.model.gpt import GPT


def window_starts(num_tokens: int, seq_len: int, max_tokens: int | None = None) -> list[tuple[int, int]]:
    """(start, length) of each window, lengths in tokens including the final label."""
    limit = num_tokens if max_tokens is None else min(num_tokens, max_tokens)
    out, start = [], 0
    while start + 1 < limit:
        length = min(seq_len + 1, limit - start)
        out.append((start, length))
        start += length
    return out


@torch.no_grad()
def cross_entropy(
    model: GPT,
    stream: Any,
    seq_len: int,
    *,
    batch_size: int = 8,
    max_tokens: int | None = None,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, float]:
    """Mean token cross-entropy and perplexity of ``model`` on ``stream`` (a TokenStream)."""
    was_training = model.training
    model.eval()
    windows = window_starts(len(stream), seq_len, max_tokens)
    if not windows:  # an empty split has no score (not a perfect one)
        split = getattr(stream, "split", "this")
        raise DataError(
            f"{getattr(stream, 'tokens_dir', 'tokens')}: the {split} split has {len(stream)} tokens, nothing to score; "
            f"raise tokenize.split.{split} or remove {split!r} from evaluate.splits"
        )
    total_nll, total_tokens = 0.0, 0
    ctx = torch.autocast(torch.device(device).type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    bar = tqdm(total=len(windows), desc=desc, unit="win", disable=not progress, leave=False)
    # Group same-length windows so that only the final short one runs alone.
    for i in range(0, len(windows), batch_size):
        group = windows[i : i + batch_size]
        for length in sorted({n for _, n in group}, reverse=True):
            rows = [stream.read(s, n) for s, n in group if n == length]
            data = torch.from_numpy(np.stack(rows).astype(np.int64, copy=False)).to(device)
            with ctx:
                logits = model(data[:, :-1])
            nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), data[:, 1:].reshape(-1), reduction="sum")
            total_nll += float(nll)
            total_tokens += data[:, 1:].numel()
        bar.update(len(group))
    bar.close()
    model.train(was_training)
    loss = total_nll / max(total_tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": float(total_tokens)}
