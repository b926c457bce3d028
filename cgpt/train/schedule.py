"""Learning-rate schedule of the recipe: linear warm-up from 0, then linear or cosine decay to end_lr.

``lr_at(step)`` follows the Model Zoo's ``SequentialLR`` (spec section 2.1): ``step`` is the global
step counter, i.e. the number of optimizer updates already done, so the first update uses
``lr_at(0) = 0``, ``lr_at(warmup_steps)`` is the peak and ``lr_at(total_steps)`` is exactly the end
LR — warm-up + decay steps = total steps for every Cerebras-GPT model.

The 13B batch switch: after ``at_step`` updates the global step is rewritten to ``step_reset_to``
and the bs-1080 schedule takes over; :func:`lr_at` maps the update count onto the right schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cgpt.presets import TrainRecipe


@dataclass(frozen=True)
class Schedule:
    peak_lr: float
    end_lr: float
    warmup_steps: int
    decay_steps: int
    decay: str = "linear"

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.decay_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * step / self.warmup_steps
        if self.decay_steps <= 0:
            return self.end_lr
        progress = min(step - self.warmup_steps, self.decay_steps) / self.decay_steps
        if self.decay == "cosine":
            return self.end_lr + (self.peak_lr - self.end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.peak_lr + (self.end_lr - self.peak_lr) * progress


def schedule_for(recipe: TrainRecipe) -> Schedule:
    return Schedule(recipe.peak_lr, recipe.end_lr, recipe.warmup_steps, recipe.decay_steps, recipe.decay)


def lr_at(recipe: TrainRecipe, update: int) -> float:
    """LR for optimizer update number ``update`` (0-based count of updates already done)."""
    switch = recipe.batch_switch
    if switch is None or update < switch.at_step:
        return schedule_for(recipe)(update)
    after = Schedule(recipe.peak_lr, recipe.end_lr, switch.warmup_steps, switch.decay_steps, recipe.decay)
    return after(update - switch.at_step + switch.step_reset_to)


def batch_size_at(recipe: TrainRecipe, update: int) -> int:
    switch = recipe.batch_switch
    return recipe.batch_size if switch is None or update < switch.at_step else switch.batch_size


def sequences_seen(recipe: TrainRecipe, updates: int) -> int:
    """Sequences (training windows) consumed by the first ``updates`` optimizer updates.

    This is where the data order stands before update ``updates``: the sampler reads that update's
    batch from here on. Across the 13B batch switch it is 57,000 x 720 + (updates - 57,000) x 1080,
    not ``updates x 1080``, which would skip 57,000 x 360 sequences the run never saw.
    """
    switch = recipe.batch_switch
    if switch is None or updates <= switch.at_step:
        return updates * recipe.batch_size
    return switch.at_step * recipe.batch_size + (updates - switch.at_step) * switch.batch_size


def tokens_seen(recipe: TrainRecipe, updates: int) -> int:
    """Tokens consumed by the first ``updates`` optimizer updates (the 13B switch included)."""
    return sequences_seen(recipe, updates) * recipe.seq_len


def batch_sizes(recipe: TrainRecipe) -> list[int]:
    """The global batch sizes of a run: the recipe's, then the second of a batch switch."""
    return [recipe.batch_size] + ([recipe.batch_switch.batch_size] if recipe.batch_switch else [])
