"""Checkpoints of a training run, in both formats, and the trained model's folder.

* :mod:`~cgpt.train.checkpoint.files`: what both formats share (step folders, ``complete.json``
  records and verification, ``state.json``, RNG states, the one line for a failed write);
* :mod:`~cgpt.train.checkpoint.plain`: one process or DDP, whole tensors (``model.safetensors``);
* :mod:`~cgpt.train.checkpoint.sharded`: FSDP, every rank its shards (``dcp/``); imported from
  there, as only the training loop needs it (it brings in :mod:`cgpt.train.distributed`);
* :mod:`~cgpt.train.checkpoint.model_dir`: ``runs/<name>/model``, what evaluate and export read.
"""

from cgpt.train.checkpoint.files import (
    DamagedCheckpoint,
    checkpoint_step,
    list_checkpoints,
    model_config_from_dict,
    model_config_to_dict,
    read_checkpoint_state,
    restore_rng,
    verify_checkpoint,
)
from cgpt.train.checkpoint.model_dir import MODEL_DIR_CONFIG, load_model_dir, save_model_dir
from cgpt.train.checkpoint.plain import Checkpoint, load_checkpoint, save_checkpoint

__all__ = [
    "MODEL_DIR_CONFIG",
    "Checkpoint",
    "DamagedCheckpoint",
    "checkpoint_step",
    "list_checkpoints",
    "load_checkpoint",
    "load_model_dir",
    "model_config_from_dict",
    "model_config_to_dict",
    "read_checkpoint_state",
    "restore_rng",
    "save_checkpoint",
    "save_model_dir",
    "verify_checkpoint",
]
