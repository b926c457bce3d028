"""Checks run on every export: transformers loads the folder, its logits match cgpt's, and it talks.

Run by the export stage so that a broken export fails the pipeline, not a user weeks later.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cgpt.model.gpt import GPT


@torch.no_grad()
def max_logit_difference(hf_dir: Path, model: GPT, input_ids: torch.Tensor) -> float:
    """max |logit_hf - logit_cgpt| in fp32 on ``input_ids`` [B, T]."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    model = model.float().eval()
    return float((hf(input_ids).logits - model(input_ids)).abs().max())


@torch.no_grad()
def sample_text(hf_dir: Path, prompt: str, max_new_tokens: int) -> str:
    """Greedy continuation with the model card's settings (no_repeat_ngram_size=2), via transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    hf = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    inputs = tokenizer(prompt, return_tensors="pt")
    out = hf.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        no_repeat_ngram_size=2,
        pad_token_id=tokenizer.eos_token_id,
    )
    return tokenizer.decode(out[0], skip_special_tokens=True)
