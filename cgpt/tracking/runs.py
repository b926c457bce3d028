"""MLflow helpers: the one place that knows where runs live and how they are named.

* Store: ``MLFLOW_TRACKING_URI`` if set, else MLflow 3's sqlite file ``<project>/mlflow.db`` with
  artifacts in ``<project>/mlartifacts`` — exactly what ``mlflow ui --backend-store-uri
  sqlite:///mlflow.db`` shows; the project's own store also when the one set is unreachable and
  ``tracking.on_unavailable`` is ``fallback`` (:mod:`cgpt.tracking.store`).
* A store that goes away while a run logs costs a warning line, never the work: :class:`Tracker`
  keeps what it could not send and sends it when the store is back.
* One run per training configuration (experiment ``tracking.experiment``, run name =
  ``train.run_name``, with `` · <experiment>`` under ``dvc exp run``: :func:`model_run_name`; tag
  ``cgpt.config_key``): train opens it (:func:`open_model_run`, which finds an earlier
  configuration's run again by its key) and records its id in ``mlflow_run.json`` beside the
  checkpoints and the model; evaluate and export log into the same run, so the run holds the
  curves, the evaluation and the exported folder.
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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cgpt.core.errors import CgptError
from cgpt.core.fsutil import read_json, write_json_atomic
from cgpt.tracking.params import TrackingParams
from cgpt.tracking.store import FALLBACK_TAG, current_uri, fallback_for, resolve_store

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
LAUNCHED_RANK_ENV = "CGPT_LAUNCHER_PID"  # cgpt.train.launch.LAUNCHER_ENV: set in the ranks cgpt starts
log = logging.getLogger(__name__)


def tracking_uri(root: Path) -> str:
    """The store this process records into for ``root``: ``MLFLOW_TRACKING_URI``, else the project's
    ``mlflow.db``; the project's own store instead when the stage found the first unreachable and
    fell back (:mod:`cgpt.tracking.store`)."""
    return current_uri(root)


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


WEIGHTS_TAG = "cgpt.weights_sha256"  # a model run's weights (model/model.safetensors); versions carry the export's
EVALUATION_RUN_TAG = "cgpt.evaluation_run"  # the run whose evaluation of the same weights this run shows

#: MLflow error codes that mean "the store is away for now" (anything else is a real refusal and raised)
TRANSIENT_CODES = frozenset(
    {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "IO_ERROR", "SERVICE_UNDER_MAINTENANCE", "DEADLINE_EXCEEDED",
     "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED", "WORKSPACE_TEMPORARILY_UNAVAILABLE"}
)  # fmt: skip
#: after a failed send, the next try waits this long, doubling up to RETRY_MAX (seconds)
RETRY_FIRST, RETRY_MAX = 5.0, 300.0


def is_evaluation_metric(key: str) -> bool:
    """A metric the evaluate stage logs on a model run (its headline names, see
    :func:`cgpt.stages.evaluate.headline_metrics`): ``val_xent``/``test_xent``,
    ``<task>.<k>shot.acc[_norm]``, ``avg.<k>shot.acc``; never a curve or a training total."""
    return "/" not in key and (key.endswith("_xent") or "shot." in key)


def store_went_away(exc: BaseException) -> bool:
    """Whether ``exc`` says the store could not be reached (a refused or dropped connection, a
    timeout, a 5xx, a locked/vanished sqlite file), as opposed to a refusal of the request itself."""
    try:
        from mlflow.exceptions import MlflowException
        from requests.exceptions import RequestException
    except ImportError:  # pragma: no cover - both are dependencies
        return isinstance(exc, OSError)
    if isinstance(exc, (RequestException, OSError, TimeoutError)):
        return True
    if isinstance(exc, MlflowException):
        return exc.error_code in TRANSIENT_CODES
    return type(exc).__module__.startswith("sqlalchemy")


def warn(message: str) -> None:
    """One warning line on stderr that does not glue itself to a progress bar."""
    try:
        from tqdm import tqdm

        tqdm.write(f"warning: {message}", file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(f"warning: {message}", file=sys.stderr)


class Tracker:
    """A thin handle on one MLflow run; every method is a no-op when tracking is disabled.

    Metrics are buffered and sent with ``log_batch`` when ``flush_every`` values are waiting or
    ``flush_seconds`` have passed, so the UI follows a run live without one request per value.

    A store that goes away never stops the work: the failed request is kept (metrics stay in the
    buffer with their original timestamps, so a batch that did land before the connection dropped
    is not stored twice: MLflow drops identical points), one warning line says so, and the kept
    requests are sent in order once the store answers again (tried after 5 s, then at doubling
    intervals up to 5 min, a cheap probe first). What is still kept when the run finishes is named
    in one line; the training curve is in the checkpoints and the plot files, and the next stage
    that opens the run (evaluate, export: :func:`send_missing_curve`; a rerun of train) sends what
    it lacks.
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
        self._kept: list[tuple[str, Callable[[], Any]]] = []  # requests made while the store was away
        self._away: str | None = None  # why the store is away (None: it answers)
        self._retry_at = 0.0
        self._retry_wait = RETRY_FIRST

    @property
    def enabled(self) -> bool:
        return self.client is not None and self.run_id is not None

    @property
    def store_away(self) -> bool:
        return self._away is not None

    @property
    def unsent(self) -> int:
        """Metric points and other requests not yet in the store."""
        return len(self._buffer) + len(self._kept)

    def _went_away(self, what: str, exc: BaseException) -> None:
        first = self._away is None
        self._away = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        self._retry_at = time.monotonic() + self._retry_wait
        self._retry_wait = min(self._retry_wait * 2, RETRY_MAX)
        if first:
            warn(
                f"MLflow store {self.client.tracking_uri} is unreachable while {what} ({self._away}); "
                "the work goes on, and what it logs is kept and sent when the store is back"
            )

    def _store_back(self) -> bool:
        """Whether the store answers again (tried only when its retry time has come)."""
        if self._away is None:
            return True
        if time.monotonic() < self._retry_at:
            return False
        from cgpt.tracking.store import probe

        problem = probe(self.client.tracking_uri)
        if problem is not None:
            self._went_away("retrying", RuntimeError(problem))
            return False
        return True

    def _call(self, what: str, fn: Callable[[], Any]) -> bool:
        """``fn()`` now if the store answers (after the requests kept before it), else kept for later.
        True when it was sent."""
        if not self.enabled:
            return False
        if self._kept or self._away is not None:
            self._kept.append((what, fn))
            self._send_kept()
            return not self._kept
        try:
            fn()
            return True
        except Exception as exc:
            if not store_went_away(exc):
                raise
            self._kept.append((what, fn))
            self._went_away(what, exc)
            return False

    def _send_kept(self) -> None:
        """Send the kept requests and the metric buffer, in order, if the store is back."""
        if not self._store_back():
            return
        sent = len(self._kept)
        try:
            while self._kept:
                what, fn = self._kept[0]
                fn()
                self._kept.pop(0)
            self._send_buffer()
        except Exception as exc:
            if not store_went_away(exc):
                raise
            self._went_away(what if self._kept else "logging metrics", exc)
            return
        if self._away is not None:
            log.info("MLflow store %s is back: sent %d kept request(s)", self.client.tracking_uri, sent)
            warn(f"MLflow store {self.client.tracking_uri} is back; what was kept has been sent")
            self._restart_system_metrics()
        self._away, self._retry_wait = None, RETRY_FIRST

    def _restart_system_metrics(self) -> None:
        """MLflow's system-metrics thread stops for good at its first failed request: start it again."""
        thread = getattr(self._system, "_process", None)
        if self._system is not None and (thread is None or not thread.is_alive()):
            self._system = None
            self.start_system_metrics(resume=True)

    def _send_buffer(self) -> None:
        while self._buffer:
            chunk = self._buffer[:1000]
            self.client.log_batch(self.run_id, metrics=chunk)
            del self._buffer[: len(chunk)]

    def set_name(self, name: str) -> None:
        """Rename the run (a launched rank's run that is a family member's child keeps the member's name)."""
        if self.enabled:
            self._call("naming the run", lambda: self.client.update_run(self.run_id, name=name))

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.enabled:
            return

        def send() -> None:
            from mlflow.entities import Param

            existing = self.client.get_run(self.run_id).data.params
            items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items() if k not in existing]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i : i + 100])

        self._call("logging params", send)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.enabled:
            from mlflow.entities import RunTag

            items = [RunTag(k, str(v)) for k, v in tags.items()]
            self._call("setting tags", lambda: self.client.log_batch(self.run_id, tags=items))

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
        """Send what is buffered (when the store answers; else it stays buffered, see the class)."""
        self._last_flush = time.monotonic()
        if not self.enabled or not (self._buffer or self._kept):
            return
        if self._kept or self._away is not None:
            self._send_kept()
            return
        try:
            self._send_buffer()
        except Exception as exc:
            if not store_went_away(exc):
                raise
            self._went_away("logging metrics", exc)

    def last_logged_steps(self, keys: Iterable[str]) -> dict[str, int] | None:
        """The highest step the run already holds for each metric (-1 when it holds none); None when
        the store cannot say now (it is away)."""
        if not self.enabled:
            return {}
        if self._away is not None and not self._store_back():
            return None
        try:
            return {k: max((m.step for m in self.client.get_metric_history(self.run_id, k)), default=-1) for k in keys}
        except Exception as exc:
            if not store_went_away(exc):
                raise
            self._went_away("reading the curve it holds", exc)
            return None

    def log_dataset(self, name: str, digest: str, source: Path, profile: dict[str, Any], context: str) -> None:
        """Record a dataset this run used (MLflow's dataset inputs: the UI lists them per run)."""
        if not self.enabled:
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            name=name, digest=digest, source_type="local", source=json.dumps({"uri": str(source)}),
            profile=json.dumps(profile, sort_keys=True),
        )  # fmt: skip
        inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])]
        self._call("recording the dataset", lambda: self.client.log_inputs(self.run_id, inputs))

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

    def record_weights(self, digest: str) -> None:
        """Tag the run with its weights' sha256 and, when it has no evaluation yet, take the one of
        another model run with the same weights (``cgpt.evaluation_run`` names it): a DVC experiment
        whose model equals another's is not evaluated again (DVC skips the stage), yet its run shows
        the numbers."""
        if not self.enabled:
            return

        def send() -> None:
            from mlflow.entities import Metric, RunTag

            run = self.client.get_run(self.run_id)
            self.client.log_batch(self.run_id, tags=[RunTag(WEIGHTS_TAG, digest)])
            if any(is_evaluation_metric(k) for k in run.data.metrics):
                return
            others = self.client.search_runs(
                [run.info.experiment_id],
                f"tags.`{WEIGHTS_TAG}` = '{digest}' and tags.`{KIND_TAG}` = 'model'",
                order_by=["attributes.start_time ASC"],
            )
            for other in others:
                evals = {k: v for k, v in other.data.metrics.items() if is_evaluation_metric(k)}
                if other.info.run_id == self.run_id or not evals:
                    continue
                ts = int(time.time() * 1000)
                step = max(
                    (m.step for m in self.client.get_metric_history(other.info.run_id, next(iter(evals)))), default=0
                )
                metrics = [Metric(k, float(v), ts, step) for k, v in evals.items() if math.isfinite(v)]
                for i in range(0, len(metrics), 1000):
                    self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])
                self.client.log_batch(self.run_id, tags=[RunTag(EVALUATION_RUN_TAG, other.info.run_id)])
                return

        self._call("recording the weights", send)

    def ready_for_model(self) -> None:
        """Send what is kept; a store still away then is one line (model logging needs it)."""
        if not self.enabled:
            return
        self._retry_at = 0.0
        self.flush()
        if self._kept or self._away is not None:
            raise CgptError(
                f"MLflow store {self.client.tracking_uri} is unreachable ({self._away}): the model is not "
                "logged; rerun the export stage when it is back"
            )

    def log_table(self, data: Any, artifact_file: str) -> None:
        """A pandas DataFrame as an MLflow table artifact (the UI shows it as a table)."""
        if self.enabled:
            self._call(
                "logging a table", lambda: self.client.log_table(self.run_id, data=data, artifact_file=artifact_file)
            )

    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self._call(
                "logging artifacts", lambda: self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)
            )

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.enabled:
            self._call("logging a text", lambda: self.client.log_text(self.run_id, text, artifact_file))

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        """One file (a plot, a results table) into the run's artifacts, under ``artifact_path``."""
        if self.enabled:
            self._call(
                "logging an artifact", lambda: self.client.log_artifact(self.run_id, str(local_path), artifact_path)
            )

    def finish(self, status: str = "FINISHED") -> None:
        """Send what is buffered and end the run with ``status``; a store still away then costs one
        warning line naming what was not sent (never an exception: the work is done)."""
        if self._system is not None:
            self._system.finish()
            self._system = None
        if not self.enabled:
            return
        self._retry_at = 0.0  # one last try now
        self.flush()
        self._call("ending the run", lambda: self.client.set_terminated(self.run_id, status=status))
        if self.unsent:
            warn(
                f"MLflow store {self.client.tracking_uri} is still unreachable: {self.unsent} metric point(s) or "
                f"request(s) of run {self.run_id} were not sent (the training curve is kept in the checkpoints; "
                "the next stage that opens this run sends what it lacks)"
            )


class CurveLogger:
    """Training curves into MLflow exactly once per (metric, step), across kills, resumes and outages.

    It asks the run which step it last holds per metric; a point at or below that step is not sent
    again (after a resume the steps since the checkpoint are recomputed bit-exactly, so the store
    already has the same values), and every later point is sent. Replaying the checkpoint's history
    through :meth:`log` therefore fills exactly what a kill lost. While the store cannot say what
    it holds (it is away), points are held here and sorted out when it answers.
    """

    def __init__(self, tracker: Tracker, names: dict[str, str] | Iterable[str]) -> None:
        """``names``: the MLflow metric name of each row key that is a curve (a plain list: the same
        names); other keys of a row are not logged."""
        self.tracker = tracker
        self.names = dict(names) if isinstance(names, dict) else {k: k for k in names}
        self.last = tracker.last_logged_steps(self.names.values())
        self._held: list[tuple[int, dict[str, float]]] = []

    def log(self, step: int, values: dict[str, float]) -> None:
        if self.last is None:
            self._held.append((step, values))
            self._release()
            return
        named = {self.names[k]: v for k, v in values.items() if k in self.names}
        fresh = {k: v for k, v in named.items() if step > self.last.get(k, -1) and math.isfinite(v)}
        if fresh:
            self.tracker.log_metrics(fresh, step=step)
            self.last.update(dict.fromkeys(fresh, step))

    def _release(self) -> None:
        """Once the store says what it holds, send the held points that it lacks."""
        if self.last is None:
            self.last = self.tracker.last_logged_steps(self.names.values())
            if self.last is None:
                return
        held, self._held = self._held, []
        for step, values in held:
            self.log(step, values)

    def flush(self) -> None:
        if self._held:
            self._release()
        self.tracker.flush()


def send_missing_curve(tracker: Tracker, plots_dir: Path) -> int:
    """Send the training curve points the run lacks, from the train stage's plot files
    (``plots/{train,val,speed}.csv``, written when training finished): what a store that was away
    at the end of training never got. Points the run holds are not sent again. Returns how many
    steps were replayed (0 with tracking off or no plots)."""
    import csv

    if not tracker.enabled:
        return 0
    rows: dict[int, dict[str, float]] = {}
    for name in ("train.csv", "val.csv", "speed.csv"):
        path = plots_dir / name
        if not path.is_file():
            continue
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                values = {k: float(v) for k, v in row.items() if k != "step" and v not in ("", None)}
                rows.setdefault(int(row["step"]), {}).update(values)
    if not rows:
        return 0
    curves = CurveLogger(tracker, CURVE_METRICS)  # the files' columns are the loop's row keys
    for step in sorted(rows):
        curves.log(step, rows[step])
    curves.flush()
    return len(rows)


def client_for(root: Path) -> Any:
    """An MLflow client on the project's store (probed first if this process has not yet:
    :func:`cgpt.tracking.store.resolve_store`, falling back when it is unreachable)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    # cached: a stage's own check (with its on_unavailable) came first; a rank that cgpt's launcher
    # started probes again but does not repeat the launcher's line
    resolve_store(root, quiet=bool(os.environ.get(LAUNCHED_RANK_ENV)))
    uri = tracking_uri(root)
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)  # for MLflow's fluent API in this process (model logging: cgpt.tracking.registry)
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


CONFIG_KEY_TAG = "cgpt.config_key"  # what a model run is about: the configuration that determines its weights
RUN_NAME_TAG = "cgpt.run_name"


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
    """The MLflow run of a model's configuration ``key`` (train gives it; evaluate and export use
    the one ``marker``, a ``mlflow_run.json``, records), reopened, else a new one recorded in ``marker``.

    Found by the marker when it names an active run of the current store for the same key, else by
    searching the store for the model run of ``run_name`` tagged with the same ``cgpt.config_key``
    (the oldest): returning to an earlier configuration (change the data, change it back) reopens
    that configuration's run, as does a rerun in another checkout of the project or after a fall-back
    store. A changed configuration never writes into an old run: ``key`` identifies what determines
    the weights (see :func:`cgpt.stages.train.run_config`). A new run is named by
    :func:`model_run_name`; a reopened run keeps its name."""
    if not tracking.enabled:
        return disabled()
    try:
        return _open_model_run(root, tracking, run_name, marker, key, experiment_in_name)
    except Exception as exc:
        if not store_went_away(exc):
            raise
        raise CgptError(
            f"MLflow store {tracking_uri(root)} became unreachable ({str(exc).splitlines()[0][:160]}); "
            "rerun the stage when it is back (or set tracking.on_unavailable: fallback)"
        ) from None


def _open_model_run(
    root: Path, tracking: TrackingParams, run_name: str, marker: Path, key: str | None, experiment_in_name: bool
) -> Tracker:
    client = client_for(root)
    uri = tracking_uri(root)
    info = _read_marker(marker)
    if key is None and info is not None:
        key = info.get("key")
    run_id = None
    if info and info.get("tracking_uri") == uri and (key is None or info.get("key") == key):
        run_id = _active_run_id(client, info["run_id"])
    exp_id = experiment_id(client, tracking.experiment, root)
    if run_id is None and key is not None:
        found = client.search_runs(
            [exp_id],
            f"tags.`{CONFIG_KEY_TAG}` = '{key}' and tags.`{RUN_NAME_TAG}` = '{run_name}' "
            f"and tags.`{KIND_TAG}` = 'model'",
            order_by=["attributes.start_time ASC"],
            max_results=1,
        )
        run_id = found[0].info.run_id if found else None
    fresh = run_id is None
    if run_id is None:
        tags = {KIND_TAG: "model", RUN_NAME_TAG: run_name, **provenance_tags(root)}
        if key is not None:
            tags[CONFIG_KEY_TAG] = key
        name = model_run_name(run_name, experiment=experiment_in_name)
        run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
    else:
        client.update_run(run_id, status="RUNNING")
    record = {"run_id": run_id, "experiment": tracking.experiment, "tracking_uri": uri}
    if key is not None:
        record["key"] = key
    if info != record:
        write_json_atomic(marker, record)
    return Tracker(client, run_id, fresh=fresh)


def _active_run_id(client: Any, run_id: str) -> str | None:
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # deleted run or replaced store: found by key or started afresh
        if store_went_away(exc):
            raise
        return None
    return run_id if run.info.lifecycle_stage == "active" else None


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
    try:
        tracker = stage_run(root, tracking, stage, started=started, tags=tags)
    except Exception as exc:
        if not store_went_away(exc):
            raise
        warn(f"MLflow store {tracking_uri(root)} went away ({exc}); the {stage} statistics are in metrics/ only")
        return
    tracker.log_params({stage: section})
    tracker.log_metrics(numeric_items(stats))
    tracker.finish()


DATA_DIGEST_TAG = "cgpt.data.digest"


def data_runs_for(root: Path, tracking: TrackingParams, digest: str) -> list[str]:
    """Ids of the data-stage runs (newest first) that produced output with this digest."""
    if not tracking.enabled:
        return []
    try:
        client = client_for(root)
        exp = client.get_experiment_by_name(f"{tracking.experiment}-data")
        if exp is None:
            return []
        runs = client.search_runs(
            [exp.experiment_id], f"tags.`{DATA_DIGEST_TAG}` = '{digest}'", order_by=["start_time DESC"]
        )
    except Exception as exc:  # a link for the UI: never a reason to stop
        if not store_went_away(exc):
            raise
        return []
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
    if unreachable := fallback_for(root):
        tags[FALLBACK_TAG] = unreachable  # recorded here because that store was away
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
