"""Loglikelihoods of continuations, as lm-eval 0.4.13's HF backend defines them, computed faster.

The quantity (``models/huggingface.py`` ``_loglikelihood_tokens``): the model reads
``(context + continuation)[-(max_length + 1):][:-1]`` (left truncation), and a request's result is
(sum of the log-softmax of its continuation tokens at the last ``len(continuation)`` positions,
whether every one of them is the argmax). The harness runs every request as its own padded row
and takes a full-vocabulary log-softmax at every position.

This scorer gives the same numbers (|difference| ~1e-6 in fp32) with less work:

* **Shared context.** The requests of one document (HellaSwag's four endings, a 5-shot prompt
  with its choices) share a token prefix. Each document becomes one row: the prefix once, then
  every continuation, each with its own positions (restarting after the prefix) and an attention
  mask that lets it see the prefix and itself only. The prefix ends at or before the first scored
  position of every request, so every scored logit comes from a continuation segment.
* **Only scored positions reach the head.** Hidden states are gathered at the continuation
  positions before the LM head and the fp32 log-softmax, instead of a [batch, time, vocab]
  log-softmax over every position.
* **Batching by length.** Rows are sorted longest first and batched ``batch_size`` rows at a time,
  so padding is small; batches without shared context use the plain causal path.

``batch_size`` counts sequences per forward pass, as the harness's does (its sequences are single
requests; here a row holds a document's context once and all its continuations). A row is shorter
than the sum of the harness's rows for the same requests, and no [batch, time, vocab] tensor is
ever made, so at equal ``batch_size`` this scorer needs less memory than the harness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from tqdm import tqdm

from cgpt.core.errors import CgptError

_HEAD_CHUNK = 2048  # scored positions per LM-head + log-softmax call (bounds the [n, vocab] buffer)


class ScoringModel(Protocol):
    """A causal LM split at its final hidden states (see :mod:`cgpt.eval.models`)."""

    max_length: int
    device: torch.device
    supports_shared_context: bool

    def hidden_states(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor | None, attn_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """[B, T, d]; ``position_ids``/``attn_mask`` None means positions 0..T-1 and causal attention."""
        ...

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head on hidden states [..., d] -> [..., vocab]."""
        ...


@dataclass(frozen=True)
class TokenRequest:
    """One loglikelihood request in tokens; requests with the same ``group`` may share their prefix."""

    context: Sequence[int]
    continuation: Sequence[int]
    group: int = -1


@dataclass
class _Row:
    """One model row: tokens with their positions and segments (0 = shared prefix, i = continuation i)."""

    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    # (request index, first scored position in the row, continuation tokens)
    scored: list[tuple[int, int, Sequence[int]]] = field(default_factory=list)

    @property
    def shared(self) -> bool:
        return len(self.scored) > 1


def _model_input(req: TokenRequest, max_length: int, index: int) -> tuple[list[int], int]:
    """(input tokens, index of the first scored position), with the harness's left truncation."""
    n = len(req.continuation)
    if n == 0:
        raise CgptError(f"request {index}: the continuation encodes to no tokens")
    if n > max_length:
        raise CgptError(f"request {index}: continuation of {n} tokens is longer than max_length={max_length}")
    if not req.context:
        raise CgptError(f"request {index}: empty context (encode_pairs supplies the prefix token)")
    full = [*req.context, *req.continuation]
    inp = full[-(max_length + 1) :][:-1]
    return inp, len(inp) - n


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


def build_rows(requests: Sequence[TokenRequest], max_length: int, *, share_context: bool) -> list[_Row]:
    """Rows for ``requests``: one per group when its requests share a prefix, else one per request."""
    inputs = [_model_input(r, max_length, i) for i, r in enumerate(requests)]
    groups: dict[int, list[int]] = {}
    singles: list[int] = []
    for i, r in enumerate(requests):
        if share_context and r.group >= 0:
            groups.setdefault(r.group, []).append(i)
        else:
            singles.append(i)
    rows: list[_Row] = []
    for members in groups.values():
        p = 0
        if len(members) > 1:
            seqs = [inputs[i][0] for i in members]
            k = min(inputs[i][1] for i in members)
            # Fast path (multiple choice: one context for every choice): compare whole slices in C.
            p = k if all(s[:k] == seqs[0][:k] for s in seqs[1:]) else min(_common_prefix(seqs), k)
        if p == 0:  # nothing to share: one plain row each
            singles.extend(members)
            continue
        row = _Row()
        first_inp = inputs[members[0]][0]
        row.tokens.extend(first_inp[:p])
        row.positions.extend(range(p))
        row.segments.extend([0] * p)
        for seg, i in enumerate(members, start=1):
            inp, first = inputs[i]
            offset = len(row.tokens)
            row.tokens.extend(inp[p:])
            row.positions.extend(range(p, len(inp)))
            row.segments.extend([seg] * (len(inp) - p))
            row.scored.append((i, offset + first - p, requests[i].continuation))
        rows.append(row)
    for i in sorted(singles):
        inp, first = inputs[i]
        rows.append(_Row(list(inp), list(range(len(inp))), [0] * len(inp), [(i, first, requests[i].continuation)]))
    return rows


def _batches(rows: list[_Row], batch_size: int) -> list[list[_Row]]:
    """Longest rows first, ``batch_size`` rows per batch."""
    order = sorted(rows, key=lambda r: (-len(r.tokens), r.scored[0][0]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def shared_context_mask(segments: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] bool: a token sees earlier tokens of the shared prefix (segment 0) and of its own segment.

    Padding has segment -1: it sees the prefix and earlier padding, so no row of the mask is empty
    (an empty row would make NaNs), and no real token sees padding (padding comes last).
    """
    T = segments.shape[1]
    idx = torch.arange(T, device=segments.device)
    causal = idx[None, :] <= idx[:, None]
    seg_q, seg_k = segments[:, :, None], segments[:, None, :]
    return (causal & ((seg_k == 0) | (seg_k == seg_q))).unsqueeze(1)


@torch.inference_mode()
def _score_batch(model: ScoringModel, batch: list[_Row]) -> list[tuple[int, float, bool]]:
    device = model.device
    T = max(len(r.tokens) for r in batch)
    B = len(batch)
    ids = torch.zeros(B, T, dtype=torch.long)
    pos = torch.zeros(B, T, dtype=torch.long)
    seg = torch.full((B, T), -1, dtype=torch.long)
    rows_idx, cols_idx, targets = [], [], []
    order: list[int] = []
    spans: list[tuple[int, int, int, int]] = []
    for b, row in enumerate(batch):
        n = len(row.tokens)
        ids[b, :n] = torch.tensor(row.tokens)
        pos[b, :n] = torch.tensor(row.positions)
        seg[b, :n] = torch.tensor(row.segments)
        for req, start, cont in row.scored:
            order.append(req)
            spans.append((b, start, req, len(cont)))
            rows_idx.extend([b] * len(cont))
            cols_idx.extend(range(start, start + len(cont)))
            targets.extend(cont)
    shared = any(r.shared for r in batch)
    ids = ids.to(device)
    if shared:
        hidden = model.hidden_states(ids, pos.to(device), shared_context_mask(seg.to(device)))
    else:  # plain rows: positions 0..n-1, causal; right padding never reaches a real token
        hidden = model.hidden_states(ids, None, None)
    rows_t = torch.tensor(rows_idx, device=device)
    cols_t = torch.tensor(cols_idx, device=device)
    tgt = torch.tensor(targets, device=device)
    picked = hidden[rows_t, cols_t]
    token_ll = torch.empty(len(targets), dtype=torch.float32, device=device)
    token_hit = torch.empty(len(targets), dtype=torch.bool, device=device)
    for s in range(0, len(targets), _HEAD_CHUNK):
        e = s + _HEAD_CHUNK
        logp = F.log_softmax(model.logits(picked[s:e]).float(), dim=-1)
        token_ll[s:e] = logp.gather(-1, tgt[s:e, None]).squeeze(-1)
        token_hit[s:e] = logp.argmax(dim=-1) == tgt[s:e]  # argmax of the log-softmax, first index on ties
    # Each request's sum is a torch fp32 sum over its own contiguous slice, as the harness sums its
    # [1, n] tensor: with |ll| in the hundreds one fp32 ulp is ~6e-5, so another summation order
    # (index_add, float64) would differ from the harness by several ulps.
    token_ll, token_hit = token_ll.cpu(), token_hit.cpu()
    out = []
    s = 0
    for req, (_, _, _, n) in zip(order, spans):
        out.append((req, float(token_ll[s : s + n].sum()), bool(token_hit[s : s + n].all())))
        s += n
    return out


def score_requests(
    model: ScoringModel,
    requests: Sequence[TokenRequest],
    *,
    batch_size: int = 32,
    share_context: bool = True,
    progress: bool = False,
    desc: str = "loglikelihood",
) -> list[tuple[float, bool]]:
    """(loglikelihood, is_greedy) of each request, in order (see the module docstring)."""
    if batch_size < 1:
        raise CgptError(f"batch_size must be at least 1, got {batch_size}")
    rows = build_rows(requests, model.max_length, share_context=share_context and model.supports_shared_context)
    out: list[tuple[float, bool] | None] = [None] * len(requests)
    bar = tqdm(total=len(requests), desc=desc, unit="req", disable=not progress, leave=False, dynamic_ncols=True)
    for batch in _batches(rows, batch_size):
        for req, ll, greedy in _score_batch(model, batch):
            if not math.isfinite(ll):
                raise CgptError(f"request {req}: loglikelihood is {ll}; the model produced non-finite logits")
            out[req] = (ll, greedy)
        bar.update(sum(len(r.scored) for r in batch))
    bar.close()
    assert all(o is not None for o in out)
    return out  # type: ignore[return-value]
