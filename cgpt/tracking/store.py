"""Is the MLflow store there? Asked in seconds before a stage works, and answered in one line.

MLflow itself finds out late and slowly: its HTTP client retries a refused connection 7 times with
exponential back-off (about 250 s) and then raises a long traceback, after the stage has done its
work (or, in train, before training starts). So every stage first probes the store
(:func:`resolve_store`): a tracking server with a short ``GET <uri>/health``, a sqlite or file
store by whether its folder is writable. An unreachable store gives ONE line naming the URI, and
then, by ``tracking.on_unavailable``:

* ``fallback`` (the default): the stage records into the project's own store
  (``sqlite:///<project>/mlflow.db``, what ``mlflow ui`` in the project shows), and says so; the
  runs made there are tagged ``cgpt.tracking.fallback_for = <the unreachable URI>``;
* ``error``: the stage stops before any work (``error: ...``, exit status 2).

The decision holds for the process for :data:`RECHECK_SECONDS` (a flow running several stages
probes once), then the store is probed again. :func:`bound_mlflow_http` also bounds MLflow's own
retries for the whole process, so a store that goes away later costs seconds per attempt, not
minutes (the user's own ``MLFLOW_HTTP_REQUEST_*`` settings win).

No MLflow import here: the probe is the standard library's HTTP client.
"""

from __future__ import annotations

import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cgpt.core.errors import CgptError

#: seconds a tracking server gets to answer the probe
PROBE_TIMEOUT = 3.0
#: how long a probe's verdict holds in one process
RECHECK_SECONDS = 60.0
#: MLflow's HTTP client settings when the user set none: 2 retries, 1 s back-off, 15 s per request
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
FALLBACK_TAG = "cgpt.tracking.fallback_for"


class TrackingUnavailable(CgptError):
    """The tracking store cannot be reached and ``tracking.on_unavailable`` is ``error``."""


@dataclass(frozen=True)
class StoreChoice:
    """Where this process records: ``uri``; ``unreachable`` is the store it wanted, when it fell back."""

    uri: str
    unreachable: str | None = None
    checked_at: float = 0.0


_choices: dict[tuple[str, str], StoreChoice] = {}


def bound_mlflow_http() -> None:
    """Bound MLflow's HTTP retries and timeout for this process (and the processes it starts)
    unless the user set them: an unreachable server then fails in seconds, not ~250 s."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def default_uri(root: Path) -> str:
    """The project's own store: a sqlite file beside params.yaml (artifacts in ``mlartifacts/``)."""
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def configured_uri(root: Path) -> str:
    """The store the user asked for: ``MLFLOW_TRACKING_URI``, else the project's own."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri(root)


def probe(uri: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why ``uri`` cannot be used (a few words), or None when it can.

    http(s): ``GET <uri>/health`` answers 200 (any HTTP answer but a 5xx counts as a live server:
    a proxy may guard /health). sqlite / file / a plain path: the folder exists or can be made, and
    is writable. Other schemes (databricks, ...) are not probed: MLflow's own errors apply."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:  # noqa: S310
                resp.read(64)
            return None
        except urllib.error.HTTPError as exc:
            return None if exc.code < 500 else f"HTTP {exc.code} {exc.reason}"
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLError):
                return None  # a server answered; TLS settings (MLFLOW_TRACKING_INSECURE_TLS, ...) are MLflow's
            return str(getattr(reason, "strerror", None) or reason).lower()
        except (TimeoutError, OSError) as exc:
            return f"no answer within {timeout:.0f} s" if isinstance(exc, TimeoutError) else str(exc)
    if uri.startswith("sqlite:///"):
        return _writable_folder(Path(uri.removeprefix("sqlite:///")).parent, Path(uri.removeprefix("sqlite:///")))
    if uri.startswith("file:"):
        return _writable_folder(Path(uri.removeprefix("file://").removeprefix("file:")), None)
    if "://" not in uri:
        return _writable_folder(Path(uri), None)
    return None


def _writable_folder(folder: Path, file: Path | None) -> str | None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder is created on first use: its nearest existing parent must allow it
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    if file is not None and file.exists() and not os.access(file, os.R_OK | os.W_OK):
        return f"{file} is not writable"
    return None


def resolve_store(root: Path, on_unavailable: str = "fallback", *, quiet: bool = False) -> StoreChoice:
    """The store this process records into for the project at ``root``, probed once per
    :data:`RECHECK_SECONDS`. Unreachable: one line on stderr and the fallback (the project's own
    store), or :class:`TrackingUnavailable` (``on_unavailable: error``)."""
    bound_mlflow_http()
    wanted = configured_uri(root)
    key = (str(root.resolve()), wanted)
    now = time.monotonic()
    cached = _choices.get(key)
    if cached is not None and now - cached.checked_at < RECHECK_SECONDS:
        if cached.unreachable is not None and on_unavailable == "error":
            raise _unavailable(wanted, "unreachable a moment ago")
        return cached
    problem = probe(wanted)
    if problem is None:
        choice = StoreChoice(wanted, None, now)
    else:
        if on_unavailable == "error":
            raise _unavailable(wanted, problem)
        fallback = default_uri(root)
        if fallback == wanted or probe(fallback) is not None:
            raise TrackingUnavailable(
                f"MLflow tracking store {wanted} is unusable ({problem}) and so is the fallback {fallback}; "
                "fix the store, or set tracking.enabled: false"
            )
        choice = StoreChoice(fallback, wanted, now)
        if not quiet:
            print(
                f"warning: MLflow tracking store {wanted} is unreachable ({problem}); recording in {fallback} "
                "instead (tracking.on_unavailable: fallback)",
                file=sys.stderr,
                flush=True,
            )
    _choices[key] = choice
    return choice


def current_uri(root: Path) -> str:
    """The store chosen for ``root`` by the last :func:`resolve_store` (whatever its age), else the
    configured one: what every MLflow call of this process uses."""
    wanted = configured_uri(root)
    choice = _choices.get((str(root.resolve()), wanted))
    return choice.uri if choice is not None else wanted


def fallback_for(root: Path) -> str | None:
    """The unreachable store this process stands in for, when it fell back."""
    choice = _choices.get((str(root.resolve()), configured_uri(root)))
    return choice.unreachable if choice is not None else None


def forget() -> None:
    """Drop every verdict (tests; a long-lived process that wants a fresh probe now)."""
    _choices.clear()


def _unavailable(uri: str, problem: str) -> TrackingUnavailable:
    return TrackingUnavailable(
        f"MLflow tracking store {uri} is unreachable ({problem}); start it or fix MLFLOW_TRACKING_URI, "
        "or set tracking.on_unavailable: fallback to record in the project's own store meanwhile"
    )


def check_tracking(root: Path, tracking: object) -> None:
    """A stage's first act: probe the store its ``tracking:`` section records into (nothing when
    tracking is off). Stops the stage (one line) or picks the fallback, by ``on_unavailable``."""
    if getattr(tracking, "enabled", False):
        resolve_store(root, getattr(tracking, "on_unavailable", "fallback"))
