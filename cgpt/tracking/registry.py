"""The exported model in MLflow: one logged model and one registered version per distinct weights.

Export may be killed anywhere, and rerun any number of times (a rerun of the same configuration, a
DVC experiment whose weights equal another's, a change that only touches the model card). So:

* Logged models are keyed by the sha256 of the exported weights (tag ``cgpt.weights_sha256``).
  Before logging, this run's logged models with that digest are looked up: a READY one is reused
  (nothing logged again); a PENDING one (a kill during ``log_model`` left it) is finished, by
  logging into it (``log_model(model_id=...)``), so no model stays PENDING; a PENDING one of other
  weights (an older export killed half way) is marked FAILED.
* Registered versions carry the same tag; before registering, the registered model's versions
  with this digest are looked up, and an existing one is reused: the same weights are never two
  versions. A version records the DVC experiment that registered it (``dvc.exp_name``) and, in
  ``cgpt.dvc_exp_names``, every experiment that exported these weights since.

How the model is saved (a params schema, cgpt's pyfunc loader, the licence: so it serves) is
:mod:`cgpt.tracking.serving`'s; which version users load (``@champion``, ``@latest-exp``) is
:mod:`cgpt.tracking.aliases`'s, applied after registration. Only the export stage imports this module.

The model is created in PENDING state by :func:`start_logged_model` first and logged into
afterwards, so the window a kill can hit is covered by the lookup above (fault point
``export.logging`` sits in it).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cgpt.faults import fault_point

if TYPE_CHECKING:
    from cgpt.tracking.runs import Tracker

WEIGHTS_TAG = "cgpt.weights_sha256"
EXP_NAME_TAG = "dvc.exp_name"
EXP_NAMES_TAG = "cgpt.dvc_exp_names"
MODEL_NAME = "model"  # the logged model's name (its artifact path under the run)


def weights_digest(folder: Path) -> str:
    """sha256 of the weights file(s) of an exported folder (``*.safetensors``, in name order)."""
    h = hashlib.sha256()
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def run_logged_models(client: Any, run_id: str, digest: str | None = None) -> list[Any]:
    """The logged models of run ``run_id`` (with weights ``digest`` when given), oldest first."""
    run = client.get_run(run_id)
    flt = f"source_run_id = '{run_id}'"
    found = client.search_logged_models(experiment_ids=[run.info.experiment_id], filter_string=flt)
    models = [m for m in found if digest is None or m.tags.get(WEIGHTS_TAG) == digest]
    return sorted(models, key=lambda m: m.creation_timestamp)


def settle_pending(client: Any, run_id: str, keep: str | None) -> list[str]:
    """Mark this run's PENDING logged models FAILED but ``keep`` (left by kills during export, for
    weights no longer exported); their ids."""
    from mlflow.entities import LoggedModelStatus

    failed = []
    for m in run_logged_models(client, run_id):
        if m.model_id != keep and str(m.status) in ("PENDING", str(LoggedModelStatus.PENDING)):
            client.finalize_logged_model(m.model_id, LoggedModelStatus.FAILED)
            failed.append(m.model_id)
    return failed


def start_logged_model(client: Any, run_id: str, digest: str, tags: dict[str, str]) -> tuple[str, bool]:
    """The logged model of these weights in this run: (its id, whether it is READY already). A
    READY one is reused, a PENDING one returned to be finished, else a new PENDING one is created
    (tagged with the digest, the run's params copied, as ``log_model`` would)."""
    existing = run_logged_models(client, run_id, digest)
    ready = [m for m in existing if str(m.status).endswith("READY")]
    if ready:
        return ready[-1].model_id, True
    pending = [m for m in existing if str(m.status).endswith("PENDING")]
    if pending:
        return pending[-1].model_id, False
    run = client.get_run(run_id)
    model = client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        tags={**tags, WEIGHTS_TAG: digest},
        params={k: str(v) for k, v in run.data.params.items()},
    )
    return model.model_id, False


def find_version(client: Any, name: str, digest: str) -> Any | None:
    """The registered version of ``name`` with these weights (the oldest), or None."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name = '{name}' and tags.`{WEIGHTS_TAG}` = '{digest}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return min(found, key=lambda v: int(v.version)) if found else None


def register_version(client: Any, name: str, model_id: str, digest: str, tags: dict[str, str]) -> Any:
    """Version of ``name`` for these weights: the existing one (its experiment names completed), or
    a new one created with every tag in the same request (a kill cannot leave it without its digest)."""
    exp_name = os.environ.get("DVC_EXP_NAME")
    version = find_version(client, name, digest)
    if version is None:
        import mlflow

        all_tags = {**tags, WEIGHTS_TAG: digest}
        if exp_name:
            all_tags |= {EXP_NAME_TAG: exp_name, EXP_NAMES_TAG: exp_name}
        mlflow.set_tracking_uri(client.tracking_uri)
        # MLflow's own registration: the registered model created if needed, the version created with
        # its tags in one request, and the logged model tagged with its versions
        return mlflow.register_model(f"models:/{model_id}", name, tags=all_tags)
    if exp_name:
        names = [n for n in version.tags.get(EXP_NAMES_TAG, "").split(",") if n]
        if exp_name not in names:
            client.set_model_version_tag(name, version.version, EXP_NAMES_TAG, ",".join([*names, exp_name]))
        if EXP_NAME_TAG not in version.tags:
            client.set_model_version_tag(name, version.version, EXP_NAME_TAG, exp_name)
    return version


def log_hf_model(
    tracker: Tracker,
    folder: Path,
    card: str,
    *,
    registered_model: str | None,
    metrics: dict[str, float],
    tags: dict[str, str],
    license_text: str,
    step: int = 0,
) -> str | None:
    """:func:`log_and_register` into ``tracker``'s run (nothing when tracking is off). Returns the
    logged model's id. Model logging needs the store: one still away fails the stage (one line)."""
    if not tracker.enabled:
        return None
    tracker.ready_for_model()
    return log_and_register(
        tracker.client,
        tracker.run_id,
        folder,
        card,
        registered_model=registered_model,
        metrics=metrics,
        tags=tags,
        license_text=license_text,
        step=step,
    )


def log_and_register(
    client: Any,
    run_id: str,
    folder: Path,
    card: str,
    *,
    registered_model: str | None,
    metrics: dict[str, float],
    tags: dict[str, str],
    license_text: str,
    step: int = 0,
) -> str:
    """Log ``folder`` (an exported Hugging Face model) into run ``run_id`` as an MLflow 3 logged
    model that serves (:mod:`cgpt.tracking.serving`: the ``transformers`` flavor, so
    ``mlflow.transformers.load_model("models:/<name>/<version>")`` gives a text-generation pipeline,
    with a params schema, cgpt's context-fitting pyfunc loader and ``license_text`` as LICENSE.txt,
    so ``mlflow models serve`` serves it), with the model card and ``metrics`` (on the model, and on the
    run at ``step``, the model's training step: unprefixed names, as the evaluate stage's), and register it
    under ``registered_model``, each at most once per weights digest (see the module); then the
    registration policy moves the aliases (:mod:`cgpt.tracking.aliases`: ``@champion`` by
    ``val_xent``, ``@latest-exp``), on every run, so a kill after registering is completed by
    the rerun. Returns the logged model's id."""
    digest = weights_digest(folder)
    model_id, ready = start_logged_model(client, run_id, digest, tags)
    settle_pending(client, run_id, keep=model_id)
    if not ready:
        fault_point("export.logging")  # a kill here leaves the PENDING model a rerun finishes
        _log_servable(client, run_id, folder, card, model_id, license_text)
    if metrics:
        _log_model_metrics(client, run_id, model_id, metrics, step)
    if registered_model:
        from cgpt.tracking.aliases import apply_registration_policy

        fault_point("export.registering")
        version = register_version(client, registered_model, model_id, digest, tags)
        for move in apply_registration_policy(
            client, registered_model, str(version.version), score=metrics.get("val_xent")
        ):
            print(f"{registered_model} {move}")
    return model_id


def _log_servable(client: Any, run_id: str, folder: Path, card: str, model_id: str, license_text: str) -> None:
    """Serving's model logging (:func:`cgpt.tracking.serving.log_text_generation_model`) into the
    existing logged model ``model_id`` (MLflow uploads the artifacts and marks the model READY, or
    FAILED on an error)."""
    import mlflow
    import tokenizers
    import torch
    import transformers

    from cgpt.tracking.serving import log_text_generation_model

    mlflow.set_tracking_uri(client.tracking_uri)
    # explicit requirements: the flavor's own guess imports packages this project does not use
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}",
                    f"tokenizers=={tokenizers.__version__}", "safetensors"]  # fmt: skip
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        log_text_generation_model(folder, card, license_text=license_text, requirements=requirements, model_id=model_id)


def _log_model_metrics(client: Any, run_id: str, model_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """``metrics`` on the logged model (shown with it and its versions), once: a rerun that reuses
    the model does not add a second point of the same value."""
    import time

    from mlflow.entities import Metric

    held = {m.key: m.value for m in client.get_logged_model(model_id).metrics or []}
    ts = int(time.time() * 1000)
    todo = [
        Metric(k, float(v), ts, step, model_id=model_id, run_id=run_id)
        for k, v in metrics.items()
        if math.isfinite(v) and held.get(k) != float(v)
    ]
    if todo:
        client.log_batch(run_id, metrics=todo)
