"""An exported folder as an MLflow model that ``mlflow models serve`` serves (the export stage's logging).

Kept out of :mod:`cgpt.tracking.runs` (which every stage imports) so that only the export stage depends on
this code and the loader it ships. :mod:`cgpt.tracking.registry` decides *whether* to log (one logged model
and one registered version per weights digest) and calls :func:`log_text_generation_model` to do it, then
applies the registration policy (:mod:`cgpt.tracking.aliases`).

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

from pathlib import Path
from typing import Any

#: the pyfunc loader shipped with each model (a standalone file: only MLflow and transformers imports)
LOADER_FILE = Path(__file__).with_name("cgpt_textgen.py")
LOADER_MODULE = LOADER_FILE.stem


def generation_signature(n_positions: int) -> Any:
    """Input: a prompt (string; a list of them is a batch). Output: the generated text. Params: the usual
    generation arguments with the defaults a request gets when it leaves them out (MLflow fills every
    missing param from here): sampling at temperature 0.7 with top-k 50 (not transformers' 1.0: a
    sampled small model at 1.0 rambles), ``max_new_tokens`` 64 or a quarter of a small context, and
    ``seed`` None (unseeded; the only param without a value)."""
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
    model_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> Any:
    """Log ``folder`` (an export) into the active run as a servable text-generation model; return MLflow's
    ``ModelInfo``. ``model_id``: an existing (PENDING) logged model to log into, which MLflow marks READY
    (:mod:`cgpt.tracking.registry` creates it first, keyed by the weights' digest, so a kill mid-upload is
    finished by a rerun); without it MLflow creates one, tagged ``tags``. Registration is the registry's
    (at most one version per weights), not done here."""
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
        tags=tags,
        model_id=model_id,
        transformers_model=generator,
        model_card=ModelCard(card),
        pip_requirements=requirements,
        signature=generation_signature(context_length(generator.model)),
        code_paths=[str(LOADER_FILE)],
        license_text=license_text,
    )
