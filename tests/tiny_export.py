"""A tiny exported Hugging Face folder (a byte-level BPE trained here, a random 2-layer GPT) and a way to
log it as cgpt's registered MLflow model: for the serving and registry tests (no pipeline run needed)."""

from __future__ import annotations

from pathlib import Path

import torch

from cgpt.data.tokenize.tokenizer import EOS_TOKEN as EOS
from cgpt.data.tokenize.tokenizer import save_tokenizer, train_tokenizer
from cgpt.export.hf import export_hf
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig

TEXT = ["Generative AI is a field of machine learning. Hello world, hello there, general kenobi."] * 20


def tiny_export(tmp: Path, n_positions: int = 32) -> Path:
    """``tmp/hf``: an exported folder whose model has ``n_positions`` positions."""
    tmp.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(TEXT, vocab_size=300, min_frequency=1)  # the tokenize stage's own trainer
    save_tokenizer(tok, tmp)
    cfg = ModelConfig(
        n_layer=2, d_model=32, n_head=2, d_ffn=64, vocab_size=tok.get_vocab_size(), n_positions=n_positions
    )
    torch.manual_seed(0)
    return export_hf(
        GPT(cfg).state_dict(), cfg, tmp / "hf", tokenizer_json=tmp / "tokenizer.json", eos_token_id=tok.token_to_id(EOS)
    )


def log_tiny_model(store: Path, folder: Path, license_text: str = "the licence\n") -> str:
    """Log ``folder`` into a fresh sqlite store under ``store`` as version 1 of ``cgpt``, by the export stage's
    own path (:func:`cgpt.tracking.registry.log_and_register`); return the store's URI."""
    from mlflow.tracking import MlflowClient

    from cgpt.tracking.registry import log_and_register

    uri = f"sqlite:///{store / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("serve", artifact_location=(store / "mlartifacts").as_uri())
    run_id = client.create_run(exp).info.run_id
    log_and_register(
        client,
        run_id,
        folder,
        "---\nlicense: apache-2.0\n---\n# tiny\n",
        registered_model="cgpt",
        metrics={},
        tags={"cgpt.run_name": "tiny"},
        license_text=license_text,
    )
    client.set_terminated(run_id)
    return uri
