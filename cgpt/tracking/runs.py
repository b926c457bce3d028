"""MLflow helpers: the one place that knows where runs live and how they are named.

* Store: ``MLFLOW_TRACKING_URI`` if set, else MLflow 3's sqlite file ``<project>/mlflow.db`` with
  artifacts in ``<project>/mlartifacts`` — exactly what ``mlflow ui --backend-store-uri
  sqlite:///mlflow.db`` shows.
* One run per trained model (experiment ``tracking.experiment``, run name = ``train.run_name``, with
  `` · <experiment>`` under ``dvc exp run``: :func:`model_run_name`): train opens it
  (:func:`open_model_run`) and records its id in ``mlflow_run.json`` beside the checkpoints and the
  model; evaluate and export log into the same run, so the run holds the curves, the evaluation and
  the exported folder.
* Data stages log their statistics as one run each in ``<experiment>-data``, timed from the start
  of their work, tagged with the digest of what they produced; a model run links to the data runs
  that made its tokens (a dataset input and a tag).
* Experiments are created as MLflow 3 "custom model development" experiments (tag
  ``mlflow.experimentKind``), so the UI opens on runs and charts, not on GenAI traces.
* Metrics are buffered and sent with ``log_batch`` (one request per flush, not one per value).
* Names (:data:`CURVE_METRICS`): MLflow's charts group metrics by the part of their name before the
  last ``/`` and draw those sections in alphabetical order, then the unprefixed "Model metrics",
  then ``system/``. So the training curves are ``train/...`` and ``val/...`` (drawn first), the few
  headline numbers (val/test cross-entropy, accuracies, the training's totals) have no prefix, and
  every other one-off number goes to a table artifact, not into a one-dot chart.
* Every run carries the system tags MLflow's run page reads for its Source box
  (:func:`provenance_tags`): the command, the git commit, branch and remote.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cgpt.core.errors import CgptError
from cgpt.core.fsutil import read_json, write_json_atomic
from cgpt.tracking.params import TrackingParams

RUN_FILE = "mlflow_run.json"
#: the training curves' MLflow names, by the key of the loop's history/speed rows (see the module docstring)
CURVE_METRICS = {
    "loss": "train/loss",
    "lr": "train/lr",
    "grad_norm": "train/grad_norm",
    "tokens_per_s": "train/tokens_per_s",
    "flops_per_s": "train/flops_per_s",
    "mfu": "train/mfu",
    "val_loss": "val/loss",
}
RUN_NAME_SEPARATOR = " · "  # between a run's name and its DVC experiment's
KIND_TAG = "cgpt.kind"  # what a run is about: model, data, family, mup-sweep, mup-trial
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under this parent
log = logging.getLogger(__name__)


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def flatten(d: dict[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [{"d": 2}]}`` -> ``{"a.b": 1, "c.0.d": 2}``: lists are indexed (never a
    Python repr), ``None`` (an unset override) is left out."""
    out: dict[str, Any] = {}
    items = enumerate(d) if isinstance(d, list) else d.items()
    for k, v in items:
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, (dict, list)) and v:
            out.update(flatten(v, key, sep))
        elif v is not None and v != {} and v != []:
            out[key] = v
    return out


def numeric_items(d: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a (nested) stats dict, flattened, ready to be MLflow metrics."""
    out = {}
    for k, v in flatten(d).items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            out[k] = float(v)
    return out


class Tracker:
    """A thin handle on one MLflow run; every method is a no-op when tracking is disabled.

    Metrics are buffered and sent with ``log_batch`` when ``flush_every`` values are waiting or
    ``flush_seconds`` have passed, so the UI follows a run live without one request per value.
    """

    def __init__(
        self,
        client: Any | None,
        run_id: str | None,
        flush_every: int = 200,
        fresh: bool = False,
        flush_seconds: float = 5.0,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.fresh = fresh  # created by this process (not reopened)
        self._buffer: list[Any] = []
        self._flush_every = flush_every
        self._flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self._system: Any = None

    @property
    def enabled(self) -> bool:
        return self.client is not None and self.run_id is not None

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items() if k not in existing]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.enabled:
            from mlflow.entities import RunTag

            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Buffer metrics; they are sent in batches of ``flush_every`` values."""
        if not self.enabled:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), ts, step or 0) for k, v in metrics.items() if math.isfinite(v))
        if len(self._buffer) >= self._flush_every or time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self.enabled or not self._buffer:
            return
        for i in range(0, len(self._buffer), 1000):
            self.client.log_batch(self.run_id, metrics=self._buffer[i : i + 1000])
        self._buffer.clear()

    def last_logged_steps(self, keys: Iterable[str]) -> dict[str, int]:
        """The highest step the run already holds for each metric (-1 when it holds none)."""
        if not self.enabled:
            return {}
        return {k: max((m.step for m in self.client.get_metric_history(self.run_id, k)), default=-1) for k in keys}

    def log_dataset(self, name: str, digest: str, source: Path, profile: dict[str, Any], context: str) -> None:
        """Record a dataset this run used (MLflow's dataset inputs: the UI lists them per run)."""
        if not self.enabled:
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            name=name, digest=digest, source_type="local", source=json.dumps({"uri": str(source)}),
            profile=json.dumps(profile, sort_keys=True),
        )  # fmt: skip
        self.client.log_inputs(self.run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])

    def start_system_metrics(self, *, resume: bool) -> None:
        """CPU, memory, disk (and GPU, with nvidia-ml-py installed) every 10 s, under ``system/``."""
        if not self.enabled or self._system is not None:
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        try:
            self._system = SystemMetricsMonitor(
                self.run_id, resume_logging=resume, tracking_uri=self.client.tracking_uri
            )
            self._system.start()
        except Exception as exc:  # monitoring is a nicety: never a reason for training to fail
            log.warning("system metrics are off (%s)", exc)
            self._system = None

    def log_hf_model(
        self,
        folder: Path,
        card: str,
        *,
        registered_model: str | None,
        metrics: dict[str, float],
        tags: dict[str, str],
        step: int = 0,
    ) -> str | None:
        """Log an exported Hugging Face folder as an MLflow 3 logged model (the ``transformers`` flavor,
        so ``mlflow.transformers.load_model("models:/<name>/<version>")`` gives a text-generation
        pipeline and ``mlflow models serve`` serves it), with the model card, ``metrics`` attached to the
        model (and logged on the run at ``step``, the model's), and a new version of ``registered_model``
        tagged with ``tags``. Returns the model id."""
        if not self.enabled:
            return None
        import mlflow
        import tokenizers
        import torch
        import transformers
        from huggingface_hub import ModelCard
        from transformers import pipeline

        mlflow.set_tracking_uri(self.client.tracking_uri)
        generator = pipeline("text-generation", model=str(folder), device="cpu")
        # explicit requirements: the flavor's own guess imports packages this project does not use
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}",
                        f"tokenizers=={tokenizers.__version__}", "safetensors"]  # fmt: skip
        with mlflow.start_run(run_id=self.run_id, nested=mlflow.active_run() is not None):
            info = mlflow.transformers.log_model(
                transformers_model=generator,
                name="model",
                model_card=ModelCard(card),
                pip_requirements=requirements,
                registered_model_name=registered_model,
                tags=tags,
            )
            if metrics:
                mlflow.log_metrics(
                    {k: float(v) for k, v in metrics.items() if math.isfinite(v)}, step=step, model_id=info.model_id
                )
        if registered_model and info.registered_model_version is not None:
            for k, v in tags.items():
                self.client.set_model_version_tag(registered_model, str(info.registered_model_version), k, v)
        return info.model_id

    def log_table(self, data: Any, artifact_file: str) -> None:
        """A pandas DataFrame as an MLflow table artifact (the UI shows it as a table)."""
        if self.enabled:
            self.client.log_table(self.run_id, data=data, artifact_file=artifact_file)

    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.enabled:
            self.client.log_text(self.run_id, text, artifact_file)

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        """One file (a plot, a results table) into the run's artifacts, under ``artifact_path``."""
        if self.enabled:
            self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        if self._system is not None:
            self._system.finish()
            self._system = None
        if self.enabled:
            self.flush()
            self.client.set_terminated(self.run_id, status=status)


class CurveLogger:
    """Training curves into MLflow exactly once per (metric, step), across kills and resumes.

    At start it asks the run which step it last holds per metric; a point at or below that step
    is not sent again (after a resume the steps since the checkpoint are recomputed bit-exactly,
    so the store already has the same values), and every later point is sent. Replaying the
    checkpoint's history through :meth:`log` therefore fills exactly what a kill lost.
    """

    def __init__(self, tracker: Tracker, names: dict[str, str] | Iterable[str]) -> None:
        """``names``: the MLflow metric name of each row key that is a curve (a plain list: the same
        names); other keys of a row are not logged."""
        self.tracker = tracker
        self.names = dict(names) if isinstance(names, dict) else {k: k for k in names}
        self.last = tracker.last_logged_steps(self.names.values())

    def log(self, step: int, values: dict[str, float]) -> None:
        named = {self.names[k]: v for k, v in values.items() if k in self.names}
        fresh = {k: v for k, v in named.items() if step > self.last.get(k, -1) and math.isfinite(v)}
        if fresh:
            self.tracker.log_metrics(fresh, step=step)
            self.last.update(dict.fromkeys(fresh, step))

    def flush(self) -> None:
        self.tracker.flush()


def client_for(root: Path) -> Any:
    """An MLflow client on the project's store."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(root)
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)  # for MLflow's fluent API in this process (log_hf_model)
    # MLflow 3 also exports the URI as MLFLOW_TRACKING_URI, which tracking_uri() would then take for
    # every later project in this process (a flow working on two projects, tests): put it back
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    return MlflowClient(tracking_uri=uri)


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(client: Any, name: str, root: Path) -> str:
    """The id of experiment ``name`` in ``client``'s store, created (runs-first) if needed."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.tags.get("mlflow.experimentKind") is None:  # created by an older cgpt: open it on runs too
            for k, v in EXPERIMENT_KIND.items():
                client.set_experiment_tag(exp.experiment_id, k, v)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(tracking_uri(root)), tags=EXPERIMENT_KIND)


def open_keyed_run(
    root: Path,
    tracking: TrackingParams,
    *,
    kind: str,
    key_tag: str,
    key: str,
    run_name: str,
    tags: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> Tracker:
    """The run tagged ``cgpt.kind = kind`` and ``key_tag = key`` (the oldest, if several), marked
    RUNNING again; else a new one with those tags, ``tags``, provenance and ``params``. A parent run
    that a flow reopens on every rerun (a family, a sweep) is found by what it is about, not by a
    marker file, so a rerun in another checkout of the same project finds it too. Finish it when done."""
    if not tracking.enabled:
        return disabled()
    client = client_for(root)
    exp_id = experiment_id(client, tracking.experiment, root)
    found = client.search_runs(
        [exp_id],
        f"tags.`{key_tag}` = '{key}' and tags.`{KIND_TAG}` = '{kind}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return Tracker(client, found[0].info.run_id)
    all_tags = {KIND_TAG: kind, key_tag: key, **(tags or {}), **provenance_tags(root)}
    run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
    tracker = Tracker(client, run.info.run_id, fresh=True)
    if params:
        tracker.log_params(params)
    return tracker


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of a sqlite store keeps its artifacts: ``mlartifacts`` beside the
    database file (``<project>/mlartifacts`` for the default store), also when a run happens
    elsewhere, e.g. in the temporary copy of ``dvc exp run --temp`` with ``MLFLOW_TRACKING_URI``
    naming the project's store. Other stores (a tracking server) decide for themselves: None."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def disabled() -> Tracker:
    return Tracker(None, None)


def model_run_name(run_name: str, *, experiment: bool = True) -> str:
    """What a model run is called in MLflow: ``train.run_name``, and under ``dvc exp run`` (with
    ``experiment``) the DVC experiment's name after it, ``default · lr-3e-3``, so the workspace's run
    and each experiment's are told apart in the runs list. A family member keeps its member's name
    (``experiment=False``), nested under its family's run; its ``dvc.exp_name`` tag still says which
    experiment it belongs to."""
    exp = os.environ.get("DVC_EXP_NAME", "").strip()
    return f"{run_name}{RUN_NAME_SEPARATOR}{exp}" if experiment and exp else run_name


def open_model_run(
    root: Path,
    tracking: TrackingParams,
    run_name: str,
    marker: Path,
    *,
    key: str | None = None,
    experiment_in_name: bool = True,
) -> Tracker:
    """The MLflow run of a model: the one recorded in ``marker`` (a ``mlflow_run.json``) when it is
    in the current store, still active, and (if ``key`` is given) recorded for the same ``key``;
    otherwise a new run named by :func:`model_run_name`, recorded in ``marker``. ``key`` identifies
    what the run is about (the training configuration), so a changed configuration never writes
    into an old run. A reopened run keeps its name."""
    if not tracking.enabled:
        return disabled()
    client = client_for(root)
    info = _read_marker(marker)
    if info and info.get("tracking_uri") == tracking_uri(root) and (key is None or info.get("key") == key):
        try:
            run = client.get_run(info["run_id"])
        except Exception:  # deleted run or replaced store: start a fresh run below
            run = None
        if run is not None and run.info.lifecycle_stage == "active":
            client.update_run(run.info.run_id, status="RUNNING")
            return Tracker(client, run.info.run_id)
    exp_id = experiment_id(client, tracking.experiment, root)
    name = model_run_name(run_name, experiment=experiment_in_name)
    run = client.create_run(exp_id, run_name=name, tags={KIND_TAG: "model", **provenance_tags(root)})
    record = {"run_id": run.info.run_id, "experiment": tracking.experiment, "tracking_uri": tracking_uri(root)}
    if key is not None:
        record["key"] = key
    write_json_atomic(marker, record)
    return Tracker(client, run.info.run_id, fresh=True)


@contextmanager
def finishing(tracker: Tracker) -> Iterator[Tracker]:
    """End the run whatever happens: FINISHED, KILLED after Ctrl-C/SIGTERM, FAILED after an error
    (never left RUNNING), with every buffered metric sent first."""
    try:
        yield tracker
    except KeyboardInterrupt:
        tracker.finish("KILLED")
        raise
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish()


def _read_marker(marker: Path) -> dict[str, Any] | None:
    try:
        info = read_json(marker, missing="no run recorded")
    except CgptError:
        return None  # missing or unreadable: a new run is started and the marker rewritten
    return info if isinstance(info, dict) and isinstance(info.get("run_id"), str) else None


def stage_run(
    root: Path,
    tracking: TrackingParams,
    stage: str,
    *,
    started: float | None = None,
    tags: dict[str, str] | None = None,
) -> Tracker:
    """A fresh run in ``<experiment>-data`` for one data-stage execution (``started``: when its work began)."""
    if not tracking.enabled:
        return disabled()
    client = client_for(root)
    exp_id = experiment_id(client, f"{tracking.experiment}-data", root)
    start_ms = int((started if started is not None else time.time()) * 1000)
    tags = {KIND_TAG: "data", "cgpt.stage": stage, **provenance_tags(root), **(tags or {})}
    run = client.create_run(exp_id, run_name=stage, start_time=start_ms, tags=tags)
    return Tracker(client, run.info.run_id)


def publish_stage_stats(
    root: Path,
    tracking: TrackingParams,
    stage: str,
    section: dict[str, Any],
    stats: dict[str, Any],
    *,
    started: float | None = None,
    digest: str | None = None,
) -> None:
    """Log one data-stage execution: its params section, its numeric statistics, and (``digest``) the
    version of what it produced, which model runs use to find the data runs behind their tokens."""
    tags = {DATA_DIGEST_TAG: digest} if digest else {}
    tracker = stage_run(root, tracking, stage, started=started, tags=tags)
    tracker.log_params({stage: section})
    tracker.log_metrics(numeric_items(stats))
    tracker.finish()


DATA_DIGEST_TAG = "cgpt.data.digest"


def data_runs_for(root: Path, tracking: TrackingParams, digest: str) -> list[str]:
    """Ids of the data-stage runs (newest first) that produced output with this digest."""
    if not tracking.enabled:
        return []
    client = client_for(root)
    exp = client.get_experiment_by_name(f"{tracking.experiment}-data")
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id], f"tags.`{DATA_DIGEST_TAG}` = '{digest}'", order_by=["start_time DESC"]
    )
    return [r.info.run_id for r in runs]


def provenance_tags(root: Path, source: str | None = None) -> dict[str, str]:
    """Where a run's code and configuration came from, as the system tags MLflow's run page shows in
    its Source box (it shows "—" without ``mlflow.source.name``, whatever else is set):
    ``mlflow.source.name`` (``source``, default :func:`source_name`) and ``mlflow.source.type``
    (``LOCAL``); the git commit, branch and remote (``mlflow.source.git.commit`` / ``.branch`` /
    ``.repoURL``, the last two when known: no branch on a detached HEAD, no URL without an
    ``origin`` remote, never a password in it); whether the work tree had changes; and the DVC
    experiment when run under ``dvc exp run``."""
    tags: dict[str, str] = {"mlflow.source.name": source or source_name(root), "mlflow.source.type": "LOCAL"}
    commit = _git(root, "rev-parse", "HEAD")
    if commit:
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no", timeout=30)
        tags["mlflow.source.git.commit"] = commit
        tags["cgpt.git.dirty"] = "true" if dirty else "false"
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags["mlflow.source.git.branch"] = branch
        url = repo_url(_git(root, "remote", "get-url", "origin"))
        if url:
            tags["mlflow.source.git.repoURL"] = url
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags


def source_name(root: Path, argv: list[str] | None = None) -> str:
    """The command this process runs, as the run's Source: a script of the project relative to it
    (``stages/train.py`` for DVC's ``python -m stages.train``, ``stages/member.py train f32``); in a
    Prefect flow run started by a program (a worker's ``prefect.engine``), the flow's file
    (``flows/family.py``); else the program's name and arguments (``cgpt train``, also when the
    virtualenv lives inside the project)."""
    argv = list(sys.argv if argv is None else argv) or ["python"]
    script = Path(argv[0])
    try:
        script = script.resolve()
        in_env = Path(sys.prefix).resolve() in script.parents or "site-packages" in script.parts
        if not in_env:
            return " ".join([script.relative_to(Path(root).resolve()).as_posix(), *argv[1:]])
    except (ValueError, OSError):
        pass
    flow_file = _prefect_flow_file(root)
    if flow_file:
        return flow_file
    name = script.parent.name if script.name == "__main__.py" else script.name  # python -m pytest: "pytest"
    return " ".join([name or "python", *argv[1:]])


def _prefect_flow_file(root: Path) -> str | None:
    """The file of the Prefect flow this process is running, relative to ``root`` when inside it;
    None outside a flow run (Prefect is not imported for this: only asked when already loaded)."""
    if "prefect.context" not in sys.modules:
        return None
    try:
        import inspect

        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        if ctx is None or ctx.flow is None:
            return None
        file = Path(inspect.getsourcefile(ctx.flow.fn) or "").resolve()
        try:
            return file.relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            return file.name or None
    except Exception:  # a nicety: the Source box falls back to the program's name
        return None


def repo_url(url: str) -> str:
    """A git remote's URL fit to show: ``https://user:token@host/x.git`` loses its credentials
    (``https://host/x.git``); ``git@github.com:o/r.git`` and local paths are kept as they are."""
    url = url.strip()
    if "://" not in url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _git(root: Path, *args: str, timeout: float = 10) -> str:
    """``git <args>`` in ``root``: its output, stripped; "" when git is missing or says no."""
    try:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=timeout, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
