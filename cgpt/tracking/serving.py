"""An exported folder as an MLflow model that ``mlflow models serve`` serves (the export stage's logging).

Kept out of :mod:`cgpt.tracking.runs` (which every stage imports) so that only the export stage depends on
this code, its registration policy (:mod:`cgpt.tracking.aliases`) and the loader it ships.

The model is MLflow's ``transformers`` flavor (``mlflow.transformers.load_model`` gives the text-generation
pipeline, as before) with three differences from a plain ``mlflow.transformers.log_model``:

* a **signature with a params schema** (:func:`generation_signature`): ``max_new_tokens``, ``do_sample``,
  ``temperature``, ``top_k``, ``top_p``, ``repetition_penalty``, ``no_repeat_ngram_size``,
  ``return_full_text`` and ``seed`` reach the pipeline (MLflow drops params a model declares no schema for);
* a **pyfunc loader that fits each request into the model's context** (:mod:`cgpt.tracking.cgpt_textgen`,
  shipped inside the model as ``code/cgpt_textgen.py``): ``max_new_tokens`` clamped below ``n_positions``
  and the prompt cut from the left, instead of transformers' 256 new tokens running past the last position;
* the model's **own licence** as ``LICENSE.txt`` (MLflow writes a note pointing at the Hugging Face Hub
  page of the model's local path otherwise).

These are done with a small flavor object (:class:`_ServableTransformers`) whose ``save_model`` is
``mlflow.transformers.save_model`` followed by the two changes to the saved folder, handed to MLflow's
``Model.log`` as ``mlflow.transformers.log_model`` itself does, so the logged model, its registration and
its metadata are what MLflow writes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cgpt.tracking.runs import Tracker

#: the pyfunc loader shipped with each model (a standalone file: only MLflow and transformers imports)
LOADER_FILE = Path(__file__).with_name("cgpt_textgen.py")
LOADER_MODULE = LOADER_FILE.stem


def generation_signature(n_positions: int) -> Any:
    """Input: a prompt (string; a list of them is a batch). Output: the generated text. Params: the usual
    generation arguments, with the defaults the served model uses (transformers' text-generation defaults;
    ``max_new_tokens`` 64, or a quarter of a small context); ``None`` means transformers' own default."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    from cgpt.tracking.cgpt_textgen import default_new_tokens

    params = ParamSchema(
        [
            ParamSpec("max_new_tokens", "long", default_new_tokens(n_positions)),
            ParamSpec("do_sample", "boolean", True),
            ParamSpec("temperature", "double", 0.7),
            ParamSpec("top_k", "long", 50),
            ParamSpec("top_p", "double", 1.0),
            ParamSpec("repetition_penalty", "double", 1.0),
            ParamSpec("no_repeat_ngram_size", "long", 0),
            ParamSpec("return_full_text", "boolean", True),
            ParamSpec("seed", "long", None),
        ]
    )
    return ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")]), params=params)


class _ServableTransformers:
    """A flavor for ``Model.log``: ``mlflow.transformers.save_model``, then the licence and the pyfunc loader."""

    @staticmethod
    def save_model(path: str, mlflow_model: Any, *, license_text: str, **kwargs: Any) -> None:
        import mlflow.transformers
        from mlflow.models.model import MLMODEL_FILE_NAME
        from mlflow.pyfunc import FLAVOR_NAME as PYFUNC

        mlflow.transformers.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
        Path(path, "LICENSE.txt").write_text(license_text, encoding="utf-8")
        pyfunc = mlflow_model.flavors.get(PYFUNC)
        if pyfunc is None:  # MLflow decided the pipeline has no pyfunc form: nothing could serve it
            raise RuntimeError("mlflow.transformers saved the text-generation pipeline without a pyfunc flavor")
        pyfunc["loader_module"] = LOADER_MODULE
        mlflow_model.save(str(Path(path, MLMODEL_FILE_NAME)))


def log_text_generation_model(
    folder: Path,
    card: str,
    *,
    license_text: str,
    requirements: list[str],
    registered_model: str | None,
    tags: dict[str, str],
) -> Any:
    """Log ``folder`` (an export) into the active run as a servable text-generation model; return MLflow's
    ``ModelInfo`` (``model_id``, ``registered_model_version``)."""
    from huggingface_hub import ModelCard
    from mlflow.models import Model
    from transformers import pipeline

    from cgpt.tracking.cgpt_textgen import context_length

    generator = pipeline("text-generation", model=str(folder), device="cpu")
    return Model.log(
        artifact_path=None,  # deprecated in MLflow 3 (``name`` replaces it) but still a required argument
        name="model",
        flavor=_ServableTransformers,
        flavor_name="mlflow.transformers",  # what the logged model lists as its flavor, as log_model's does
        registered_model_name=registered_model,
        tags=tags,
        transformers_model=generator,
        model_card=ModelCard(card),
        pip_requirements=requirements,
        signature=generation_signature(context_length(generator.model)),
        code_paths=[str(LOADER_FILE)],
        license_text=license_text,
    )


def log_hf_model(
    tracker: Tracker,
    folder: Path,
    card: str,
    *,
    registered_model: str | None,
    metrics: dict[str, float],
    tags: dict[str, str],
    license_text: str,
) -> str | None:
    """Log an exported Hugging Face folder into ``tracker``'s run as an MLflow 3 logged model (the
    ``transformers`` flavor, so ``mlflow.transformers.load_model("models:/<name>/<version>")`` gives a
    text-generation pipeline, and ``mlflow models serve`` serves it: :func:`log_text_generation_model`), with
    the model card, its licence, ``metrics`` attached to the model, and a new version of ``registered_model``
    tagged with ``tags`` and given aliases by the registration policy (:mod:`cgpt.tracking.aliases`).
    Returns the model id (None when tracking is off)."""
    if not tracker.enabled:
        return None
    import mlflow
    import tokenizers
    import torch
    import transformers

    from cgpt.tracking.aliases import apply_registration_policy

    client = tracker.client
    mlflow.set_tracking_uri(client.tracking_uri)
    # explicit requirements: the flavor's own guess imports packages this project does not use
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}",
                    f"tokenizers=={tokenizers.__version__}", "safetensors"]  # fmt: skip
    with mlflow.start_run(run_id=tracker.run_id, nested=mlflow.active_run() is not None):
        info = log_text_generation_model(
            folder,
            card,
            license_text=license_text,
            requirements=requirements,
            registered_model=registered_model,
            tags=tags,
        )
        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(v)}, model_id=info.model_id)
    if registered_model and info.registered_model_version is not None:
        version = str(info.registered_model_version)
        for k, v in tags.items():
            client.set_model_version_tag(registered_model, version, k, v)
        for move in apply_registration_policy(client, registered_model, version, score=metrics.get("eval/val_xent")):
            print(f"{registered_model} {move}")
    return info.model_id
