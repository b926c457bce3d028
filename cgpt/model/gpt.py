"""The GPT-3-style decoder of Cerebras-GPT, SP and muP in one implementation.

Block structure (spec section 1.2): learned absolute positions, pre-LN blocks, biases on every
projection, exact erf GELU, a final LayerNorm, an LM head tied to the token embedding without
bias, LayerNorm eps 1e-5, no dropout. muP (section 1.4) changes four things, all read from
:class:`~cgpt.presets.ModelConfig`: embeddings x ``embeddings_scale``, attention scores
QK^T/d_head, logits x 1/m, and the init standard deviations.

Parameter names follow Hugging Face's GPT-2 (``wte``, ``h.0.attn.c_attn``...) so the export is a
transpose and a rename, nothing more. Q, K and V live in one fused ``c_attn`` Linear (rows
[Wq; Wk; Wv]); that is the same function as three separate projections with the same per-matrix
init, and one matmul instead of three.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cgpt.presets import ModelConfig


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Truncated normal with hard cutoffs at +-2 sigma (the Model Zoo's absolute a=-2s, b=2s)."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.d_head = cfg.d_head
        self.scale = cfg.attention_scale
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Causal attention; ``attn_mask`` (bool, True = attend, broadcastable to [B, H, T, T]) replaces
        the causal mask, e.g. to let several continuations share one context in a single row."""
        B, T, C = x.shape
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, self.d_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, Dh]
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, cfg.d_ffn)
        self.c_proj = nn.Linear(cfg.d_ffn, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact erf GELU, not the tanh "gelu_new"


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only LM. ``forward(input_ids, labels)`` returns logits, or (logits, mean loss)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.d_model)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Init of spec sections 1.3/1.4: truncated normals at +-2 sigma, zero biases, LN (1, 0)."""
        cfg = self.config
        trunc_normal_(self.wte.weight, cfg.embedding_init_std)
        trunc_normal_(self.wpe.weight, cfg.embedding_init_std)
        for block in self.h:
            for w in block.attn.c_attn.weight.chunk(3, dim=0):  # Q, K, V initialised as separate matrices
                trunc_normal_(w, cfg.hidden_init_std)
            trunc_normal_(block.mlp.c_fc.weight, cfg.hidden_init_std)
            trunc_normal_(block.attn.c_proj.weight, cfg.resolved_output_init_std)
            trunc_normal_(block.mlp.c_proj.weight, cfg.resolved_output_init_std)
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden(
        self,
        input_ids: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final-LayerNorm hidden states [B, T, d].

        The default (no ``position_ids``, no ``attn_mask``) is the training path: positions 0..T-1 and
        causal attention. Evaluation may pack a shared context and several continuations into one
        row: ``position_ids`` [B, T] give each token its own position (a continuation restarts right
        after the context) and ``attn_mask`` [B, 1, T, T] (bool, True = attend) says which earlier
        tokens each token sees. The row may then be longer than n_positions; no position may be.
        """
        T = input_ids.shape[1]
        if position_ids is None:
            if self.config.n_positions < T:
                raise ValueError(f"sequence length {T} exceeds n_positions={self.config.n_positions}")
            pos = torch.arange(T, device=input_ids.device)
        else:
            if position_ids.numel() and int(position_ids.max()) >= self.config.n_positions:
                raise ValueError(f"position {int(position_ids.max())} exceeds n_positions={self.config.n_positions}")
            pos = position_ids
        x = self.wte(input_ids) + self.wpe(pos)
        if self.config.embeddings_scale != 1.0:
            x = x * self.config.embeddings_scale
        for block in self.h:
            x = block(x, attn_mask)
        return self.ln_f(x)

    def logits_from_hidden(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.linear(x, self.wte.weight)
        scale = self.config.output_logits_scale
        return logits * scale if scale != 1.0 else logits

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits_from_hidden(self.hidden(input_ids))
        if labels is None:
            return logits
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, eos_token_id: int | None = None) -> torch.Tensor:
        """Greedy decoding (full recompute per token: simple, exact, fine for tests and CLI demos)."""
        out = input_ids
        for _ in range(max_new_tokens):
            ctx = out[:, -self.config.n_positions :]
            nxt = self.forward(ctx)[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
            if eos_token_id is not None and bool((nxt == eos_token_id).all()):
                break
        return out
