"""AdamW and parameter groups exactly as the Cerebras-GPT recipe (spec sections 1.4 and 2.1).

Parameter groups:

* ``decay``: every weight matrix and both embeddings (the token embedding is the tied LM head);
  weight decay 0.1 applies to them.
* ``no_decay``: biases and LayerNorm parameters (Model Zoo: any name containing "bias", and all
  LayerNorm parameters).
* muP splits ``decay`` once more: the hidden matrices (Q/K/V, attention out, FFN1, FFN2 weights)
  get LR x 1/m (``adjust_learning_rate: {decoder_kernel: 1/m}``); embeddings, LN and biases keep
  the base LR. Decay is decoupled and multiplied by the group's LR, so hidden matrices also get
  decay x 1/m, as in the Model Zoo.

Each group carries ``lr_mult``; the trainer sets ``group["lr"] = schedule(step) * lr_mult``.

:class:`CerebrasAdamW` reproduces the Model Zoo's AdamW, which differs from ``torch.optim.AdamW``
only in where epsilon goes: ``update = m / (sqrt(v) + eps) * sqrt(1 - b2^t) / (1 - b1^t)``, i.e.
eps is added to the *un*-bias-corrected sqrt(v) (the Hugging Face transformers convention).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

from cgpt.model.gpt import GPT

OptimizerName = Literal["torch", "cerebras"]

_HIDDEN_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def param_groups(model: GPT, weight_decay: float) -> list[dict[str, Any]]:
    """Recipe parameter groups with ``lr_mult`` (1/m for muP hidden matrices)."""
    cfg = model.config
    norm_params = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    groups: dict[str, dict[str, Any]] = {}

    def add(key: str, p: nn.Parameter, wd: float, lr_mult: float) -> None:
        g = groups.setdefault(key, {"name": key, "params": [], "weight_decay": wd, "lr_mult": lr_mult})
        g["params"].append(p)

    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if "bias" in name or id(p) in norm_params:
            add("no_decay", p, 0.0, 1.0)
        elif cfg.is_mup and name.endswith(_HIDDEN_SUFFIXES):
            add("hidden", p, weight_decay, 1.0 / cfg.width_mult)
        else:
            add("decay", p, weight_decay, 1.0)
    return list(groups.values())


class CerebrasAdamW(torch.optim.Optimizer):
    """AdamW with the Model Zoo's epsilon placement, in multi-tensor (``torch._foreach``) or fused math.

    ``fused=False`` (the default; CPU): one ``torch._foreach`` kernel per operation over all the
    parameters of a group. ``fused=True`` (chosen by :func:`build_optimizer` on CUDA): torch's
    fused AdamW kernel, one launch per group. That kernel puts epsilon after the bias correction,
    ``m_hat / (sqrt(v_hat) + eps')``; with ``eps' = eps / sqrt(1 - b2^t)`` this is exactly the Model
    Zoo's ``m / (sqrt(v) + eps) * sqrt(1 - b2^t) / (1 - b1^t)`` (multiply numerator and
    denominator by ``sqrt(1 - b2^t)``), so both paths agree to fp32 rounding (tests/unit/train/test_optim.py).
    Both work on FSDP's DTensor parameters (the ops are elementwise, shard by shard).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        fused: bool = False,
    ) -> None:
        if lr < 0 or eps < 0 or not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid AdamW hyperparameters lr={lr} betas={betas} eps={eps}")
        defaults: dict[str, Any] = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        if fused:  # only then: the foreach path's state_dict stays byte-identical to earlier versions
            defaults["fused"] = True  # torch.optim keeps "step" on the parameters' device when loading
        super().__init__(params, defaults)
        self.fused = fused

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = torch.enable_grad()(closure)() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            grads, exp_avgs, exp_avg_sqs, steps = [], [], [], []
            for p in params:
                state = self.state[p]
                if not state:
                    device = p.device if self.fused else None
                    state["step"] = torch.tensor(0.0, device=device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if self.fused and state["step"].device != _local(p).device:
                    state["step"] = state["step"].to(_local(p).device)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if self.fused:
                self._fused_step(params, grads, exp_avgs, exp_avg_sqs, steps, lr, beta1, beta2, eps, wd)
                continue
            for st in steps:
                st += 1
            t = float(steps[0])
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
            step_size = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
            if wd != 0:
                torch._foreach_mul_(params, 1 - lr * wd)  # decoupled: p <- p - lr * wd * p
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, value=-step_size)
        return loss

    @staticmethod
    def _fused_step(
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        exp_avgs: list[torch.Tensor],
        exp_avg_sqs: list[torch.Tensor],
        steps: list[torch.Tensor],
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        wd: float,
    ) -> None:
        torch._foreach_add_(steps, 1)
        t = float(steps[0])  # one host sync per group per step (the foreach path has the same)
        torch._fused_adamw_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],  # max_exp_avg_sqs: no AMSGrad
            steps,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=wd,
            eps=eps / math.sqrt(1 - beta2**t),  # the Model Zoo's eps on the un-corrected sqrt(v)
            amsgrad=False,
            maximize=False,
        )


def _local(p: torch.Tensor) -> torch.Tensor:
    """The local shard of an FSDP DTensor parameter (the tensor itself otherwise)."""
    return p.to_local() if hasattr(p, "to_local") else p


def build_optimizer(
    model: GPT,
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    kind: OptimizerName = "cerebras",
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """The recipe's optimizer over :func:`param_groups`; ``fused=None`` picks the fused kernel on
    CUDA and the multi-tensor path elsewhere (on CPU the fused kernel is not faster, and the
    multi-tensor one keeps checkpoints byte-identical to earlier versions)."""
    groups = param_groups(model, weight_decay)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    if fused is None:
        fused = any(_local(p).is_cuda for g in groups for p in g["params"])
    if kind == "cerebras":
        return CerebrasAdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused)
    if fused:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=True)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=True)


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = base_lr * g.get("lr_mult", 1.0)
