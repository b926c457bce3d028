"""MLflow helpers: the one place that knows where runs live and how they are named.

* Store: ``MLFLOW_TRACKING_URI`` if set, else MLflow 3's sqlite file ``<project>/mlflow.db`` with
  artifacts in ``<project>/mlartifacts`` — exactly what ``mlflow ui --backend-store-uri
  sqlite:///mlflow.db`` shows.
* One run per trained model (experiment ``tracking.experiment``, run name = ``train.run_name``):
  train opens it (:func:`open_model_run`) and records its id in ``mlflow_run.json`` beside the
  checkpoints and the model; evaluate and export log into the same run, so the run holds the
  curves, the evaluation and the exported folder.
* Data stages log their statistics as one run each in ``<experiment>-data``, timed from the start
  of their work, tagged with the digest of what they produced; a model run links to the data runs
  that made its tokens (a dataset input and a tag).
* Experiments are created as MLflow 3 "custom model development" experiments (tag
  ``mlflow.experimentKind``), so the UI opens on runs and charts, not on GenAI traces.
* Metrics are buffered and sent with ``log_batch`` (one request per flush, not one per value).
* Names: training curves have no prefix (``loss``, ``val_loss``, ``lr``...), so the UI draws them
  first; one-off summary numbers live in sections (``eval/...``, ``export/...``, ``train/...``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cgpt.core.errors import CgptError
from cgpt.core.fsutil import read_json, write_json_atomic
from cgpt.tracking.params import TrackingParams

RUN_FILE = "mlflow_run.json"
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

    def __init__(self, tracker: Tracker, keys: Iterable[str]) -> None:
        self.tracker = tracker
        self.last = tracker.last_logged_steps(keys)

    def log(self, step: int, values: dict[str, float]) -> None:
        fresh = {k: v for k, v in values.items() if step > self.last.get(k, -1) and math.isfinite(v)}
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


def open_model_run(
    root: Path, tracking: TrackingParams, run_name: str, marker: Path, *, key: str | None = None
) -> Tracker:
    """The MLflow run of a model: the one recorded in ``marker`` (a ``mlflow_run.json``) when it is
    in the current store, still active, and (if ``key`` is given) recorded for the same ``key``;
    otherwise a new run, recorded in ``marker``. ``key`` identifies what the run is about (the
    training configuration), so a changed configuration never writes into an old run."""
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
    run = client.create_run(exp_id, run_name=run_name, tags={KIND_TAG: "model", **provenance_tags(root)})
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


def provenance_tags(root: Path) -> dict[str, str]:
    """Where a run's code and configuration came from: the git commit (MLflow's own tag, shown in the UI),
    whether the work tree had changes, and the DVC experiment when run under ``dvc exp run``."""
    tags: dict[str, str] = {}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True,
            timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["cgpt.git.dirty"] = "true" if dirty else "false"
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags
