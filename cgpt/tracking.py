"""MLflow helpers: the one place that knows where runs live and how they are named.

* Store: ``MLFLOW_TRACKING_URI`` if set, else MLflow 3's sqlite file ``<project>/mlflow.db`` with
  artifacts in ``<project>/mlartifacts`` — exactly what ``mlflow ui --backend-store-uri
  sqlite:///mlflow.db`` shows.
* One run per trained model (experiment ``tracking.experiment``, run name = ``train.run_name``):
  train opens it (:func:`open_model_run`) and records its id in ``mlflow_run.json`` beside the
  checkpoints and the model; evaluate and export log into the same run, so the run holds the
  curves, the evaluation and the exported folder.
* Data stages log their statistics as one run each in ``<experiment>-data``.
* Metrics are buffered and sent with ``log_batch`` (one request per flush, not one per value).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cgpt.errors import CgptError
from cgpt.fsutil import read_json, write_json_atomic
from cgpt.tracking_params import TrackingParams

RUN_FILE = "mlflow_run.json"


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def flatten(d: dict[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key, sep))
        else:
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

    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.enabled:
            self.client.log_text(self.run_id, text, artifact_file)

    def finish(self, status: str = "FINISHED") -> None:
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


def _client(root: Path) -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: Any, name: str, root: Path) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(tracking_uri(root)))


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of a sqlite store keeps its artifacts: ``mlartifacts`` beside the
    database file (``<project>/mlartifacts`` for the default store), also when a run happens
    elsewhere, e.g. in the temporary copy of ``dvc exp run --temp`` with ``MLFLOW_TRACKING_URI``
    naming the project's store. Other stores (a tracking server) decide for themselves: None."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def run_tags() -> dict[str, str]:
    """Tags linking an MLflow run to the DVC experiment that made it (``dvc exp run`` tells its
    stages the experiment's name), so runs of one ``train.run_name`` can be told apart."""
    name = os.environ.get("DVC_EXP_NAME")
    return {"dvc.exp_name": name} if name else {}


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
    client = _client(root)
    info = _read_marker(marker)
    if info and info.get("tracking_uri") == tracking_uri(root) and (key is None or info.get("key") == key):
        try:
            run = client.get_run(info["run_id"])
        except Exception:  # deleted run or replaced store: start a fresh run below
            run = None
        if run is not None and run.info.lifecycle_stage == "active":
            client.update_run(run.info.run_id, status="RUNNING")
            return Tracker(client, run.info.run_id)
    exp_id = _experiment_id(client, tracking.experiment, root)
    run = client.create_run(exp_id, run_name=run_name, tags={"cgpt.kind": "model", **run_tags()})
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


def stage_run(root: Path, tracking: TrackingParams, stage: str) -> Tracker:
    """A fresh run in ``<experiment>-data`` for one data-stage execution."""
    if not tracking.enabled:
        return disabled()
    client = _client(root)
    exp_id = _experiment_id(client, f"{tracking.experiment}-data", root)
    tags = {"cgpt.kind": "data", "cgpt.stage": stage, **run_tags()}
    run = client.create_run(exp_id, run_name=stage, tags=tags)
    return Tracker(client, run.info.run_id)


def publish_stage_stats(
    root: Path, tracking: TrackingParams, stage: str, section: dict[str, Any], stats: dict[str, Any]
) -> None:
    """Log one data-stage execution: its params section and its numeric statistics."""
    tracker = stage_run(root, tracking, stage)
    tracker.log_params({stage: section})
    tracker.log_metrics(numeric_items(stats))
    tracker.finish()
