"""The trained model as evaluate and export read it (``runs/<name>/model``): weights + config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cgpt.core.errors import CgptError
from cgpt.core.fsutil import atomic_dir, read_json
from cgpt.presets import ModelConfig
from cgpt.train.checkpoint.files import model_config_from_dict, model_config_to_dict

MODEL_DIR_CONFIG = "cgpt_model.json"


def save_model_dir(
    out_dir: Path, model_state: dict[str, torch.Tensor], model_config: ModelConfig, meta: dict[str, Any]
) -> None:
    """The trained model as evaluate and export read it: weights + config, written atomically."""
    with atomic_dir(out_dir) as tmp:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}
        save_file(tensors, str(tmp / "model.safetensors"))
        info = {"model_config": model_config_to_dict(model_config), **meta}
        (tmp / MODEL_DIR_CONFIG).write_text(json.dumps(info, indent=2, sort_keys=True))


def load_model_dir(model_dir: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    info = read_json(
        model_dir / MODEL_DIR_CONFIG, missing="no trained model here; run the train stage first", error=CgptError
    )
    try:
        state = load_file(str(model_dir / "model.safetensors"))
    except Exception as exc:  # a truncated or missing file
        raise CgptError(
            f"{model_dir / 'model.safetensors'}: cannot be read ({str(exc)[:120]}); rerun the train "
            "stage (dvc repro -f train)"
        ) from None
    return model_config_from_dict(info["model_config"]), state, info
