"""Validation cross-entropy: next-token cross-entropy (nats/token) over whole splits, as the training
loop validates and the evaluate stage scores the upstream splits.

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

from cgpt.core.errors import DataError
from cgpt.data.tokens import SubsetRuns
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
    subsets: SubsetRuns | None = None,
) -> dict[str, Any]:
    """Mean token cross-entropy and perplexity of ``model`` on ``stream`` (a TokenStream).

    With ``subsets`` (the split's :class:`~cgpt.data.tokens.SubsetRuns`), also per subset: each
    label token counts for the document it belongs to, so ``per_subset[name]`` is the mean over that
    subset's tokens and the token-weighted mean of the subsets is the overall loss.
    """
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
    names, labels = subsets.labels(0, len(stream)) if subsets is not None else ([], None)
    sub_nll, sub_tokens = np.zeros(len(names)), np.zeros(len(names), dtype=np.int64)
    ctx = torch.autocast(torch.device(device).type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    bar = tqdm(total=len(windows), desc=desc, unit="win", disable=not progress, leave=False)
    # Group same-length windows so that only the final short one runs alone.
    for i in range(0, len(windows), batch_size):
        group = windows[i : i + batch_size]
        for length in sorted({n for _, n in group}, reverse=True):
            starts = [s for s, n in group if n == length]
            rows = [stream.read(s, length) for s in starts]
            data = torch.from_numpy(np.stack(rows).astype(np.int64, copy=False)).to(device)
            with ctx:
                logits = model(data[:, :-1])
            flat_logits, targets = logits.float().reshape(-1, logits.size(-1)), data[:, 1:].reshape(-1)
            if labels is None:
                total_nll += float(F.cross_entropy(flat_logits, targets, reduction="sum"))
            else:
                per_token = F.cross_entropy(flat_logits, targets, reduction="none").double().cpu().numpy()
                total_nll += float(per_token.sum())
                # a label at window position j is stream token start + 1 + j
                which = np.concatenate([labels[s + 1 : s + length] for s in starts])
                np.add.at(sub_nll, which, per_token)
                np.add.at(sub_tokens, which, 1)
            total_tokens += data[:, 1:].numel()
        bar.update(len(group))
    bar.close()
    model.train(was_training)
    loss = total_nll / max(total_tokens, 1)
    out: dict[str, Any] = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": float(total_tokens)}
    if subsets is not None:
        out["per_subset"] = {
            name: {"loss": float(sub_nll[i] / sub_tokens[i]), "tokens": int(sub_tokens[i])}
            for i, name in enumerate(names)
            if sub_tokens[i]
        }
    return out
