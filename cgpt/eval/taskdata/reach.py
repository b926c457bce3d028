"""Publisher hosts that failed, remembered: for the rest of the process, and for an hour in the cache.

On a machine that reaches only the package registries every publisher host fails. Without a memory
each task of a run, and each run, tried them again through the downloader's retries and backoff
(2-2.5 minutes per evaluate). Instead:

* the first contact with a host in a process is a plain TCP connect with a short timeout
  (:data:`PROBE_TIMEOUT_S`; to the proxy when ``requests`` would use one): a DNS failure, a refused
  connection or a timeout fails at once, without retries. A host that answers is downloaded from
  as before (same retries, same files);
* a host that failed (the probe, or a download whose retries ran out before it sent a byte) is
  skipped by every later task of the process, and written to ``<cache>/unreachable.json``
  (:data:`FILE_NAME`: host, error line, time); later runs skip it for :data:`TTL_S` (1 hour)
  after the failure, in a fraction of a second;
* ``CGPT_EVAL_RETRY=1`` (:data:`RETRY_ENV`; ``cgpt eval --retry-sources``) ignores the file: each
  host is tried again, once per process. Deleting the file does the same for every later run. A
  host that answers is dropped from the file.

The memory is per cache folder (two caches do not share it). PyPI is not covered: ``pip download``
has its own retries and timeouts (:mod:`cgpt.pipfetch`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cgpt.core.errors import DataError
from cgpt.core.fsutil import read_json_if_valid, write_json_atomic

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0  # the first contact with a host: a TCP connect, no retries
TTL_S = 3600.0  # how long unreachable.json keeps a host from being tried again
RETRY_ENV = "CGPT_EVAL_RETRY"
FILE_NAME = "unreachable.json"
RETRY_HINT = f"retry with {RETRY_ENV}=1 or cgpt eval --retry-sources"

# This process's memory, per cache folder: host -> its failure; hosts that answered a probe.
_FAILED: dict[tuple[str, str], Failure] = {}
_REACHED: set[tuple[str, str]] = set()


def retry_requested() -> bool:
    """``$CGPT_EVAL_RETRY`` is set to something other than empty, 0, false or no."""
    return os.environ.get(RETRY_ENV, "").strip().lower() not in ("", "0", "false", "no")


def forget() -> None:
    """Drop this process's memory (what a new process starts with; the cache's file stays)."""
    _FAILED.clear()
    _REACHED.clear()


@dataclass(frozen=True)
class Failure:
    """A host that could not be reached: the error's one line, when (Unix time), and whether an earlier run found it."""

    host: str
    error: str
    at: float
    earlier_run: bool = False

    def when(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def origin(self, now: float) -> str:
        if not self.earlier_run:
            return "failed in this run"
        return f"cached failure from {max(0, round((now - self.at) / 60))} min ago"


class Unreachable(DataError):
    """A URL whose host is known unreachable (just probed, earlier in the process, or in the cache's file)."""

    def __init__(self, url: str, failure: Failure, origin: str) -> None:
        self.url, self.failure, self.origin = url, failure, origin
        super().__init__(f"{failure.host} unreachable ({failure.error}; {origin}; {RETRY_HINT})")


def host_of(url: str) -> str:
    """``github.com``, or ``127.0.0.1:8080`` when the port is not the scheme's default."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _endpoint(url: str) -> tuple[str, int, str]:
    """Where the first connection for ``url`` goes: (host, port, what), through the proxy requests would use."""
    import requests.utils

    proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    target = proxy if proxy else url
    parts = urlsplit(target if "://" in target else f"http://{target}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port, (f"proxy {parts.hostname}:{port}" if proxy else "")


def probe(url: str, timeout_s: float) -> str | None:
    """None when a TCP connection to ``url``'s host (or its proxy) opens within ``timeout_s``, else the error line."""
    host, port, via = _endpoint(url)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:  # gaierror, ConnectionRefusedError, TimeoutError, ...
        kind = type(exc).__name__
        text = str(exc).replace("\n", " ")[:160] or "timed out"
        return f"{via + ': ' if via else ''}{kind}: {text}"
    return None


class SourceMemory:
    """The failed hosts of one cache folder: this process's, and ``<cache>/unreachable.json``'s within the TTL."""

    def __init__(
        self,
        cache: str | Path,
        *,
        retry: bool | None = None,
        ttl_s: float = TTL_S,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = Path(cache)
        self.path = self.cache / FILE_NAME
        self.retry = retry_requested() if retry is None else retry
        self.ttl_s, self.probe_timeout_s, self.clock = ttl_s, probe_timeout_s, clock
        self.scope = os.path.abspath(self.cache)

    # ----------------------------------------------------------------------------- the file

    def _read(self) -> dict[str, dict[str, Any]]:
        data = read_json_if_valid(self.path) if self.path.is_file() else None
        hosts = data.get("hosts") if isinstance(data, dict) else None
        return {h: r for h, r in hosts.items() if isinstance(r, dict)} if isinstance(hosts, dict) else {}

    def _write(self, hosts: dict[str, dict[str, Any]]) -> None:
        if not hosts:
            self.path.unlink(missing_ok=True)
            return
        write_json_atomic(
            self.path,
            {
                "about": f"task-data hosts that could not be reached; each is skipped until 'at' + ttl_seconds. "
                f"Retry now: {RETRY_ENV}=1, cgpt eval --retry-sources, or delete this file",
                "ttl_seconds": self.ttl_s,
                "hosts": hosts,
            },
        )

    # ---------------------------------------------------------------------------- the memory

    def known(self, host: str) -> Failure | None:
        """The host's failure within the TTL: this process's, else (unless retrying) an earlier run's."""
        now = self.clock()
        mine = _FAILED.get((self.scope, host))
        if mine is not None and now - mine.at < self.ttl_s and not (self.retry and mine.earlier_run):
            return mine
        if self.retry:
            return None
        rec = self._read().get(host)
        try:
            at, error = float(rec["at"]), str(rec["error"])  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            return None
        if not 0 <= now - at < self.ttl_s:
            return None
        _FAILED[(self.scope, host)] = failure = Failure(host, error, at, earlier_run=True)
        return failure

    def failed(self, host: str, error: str, *, persist: bool = True) -> Failure:
        """Remember ``host`` as unreachable: for this process, and (``persist``) in the cache's file."""
        failure = Failure(host, error.replace("\n", " "), self.clock())
        _FAILED[(self.scope, host)] = failure
        _REACHED.discard((self.scope, host))
        if persist:
            try:
                hosts = self._read()
                hosts[host] = {"error": failure.error, "at": failure.at, "when": failure.when()}
                self._write(hosts)
            except OSError as exc:  # a read-only cache still gets the in-process memory
                log.info("%s: cannot record the failure (%s)", self.path, exc)
        log.info("%s unreachable (%s); skipped for %.0f min, %s", host, failure.error, self.ttl_s / 60, RETRY_HINT)
        return failure

    def reached(self, host: str) -> None:
        """``host`` answered: no more probes in this process, and no entry in the cache's file."""
        _REACHED.add((self.scope, host))
        _FAILED.pop((self.scope, host), None)
        hosts = self._read()
        if hosts.pop(host, None) is not None:
            with contextlib.suppress(OSError):
                self._write(hosts)

    def check(self, url: str, *, timeout_s: float | None = None) -> None:
        """Raise :class:`Unreachable` when ``url``'s host is known unreachable or fails its first-contact probe."""
        host = host_of(url)
        known = self.known(host)
        if known is not None:
            raise Unreachable(url, known, known.origin(self.clock()))
        if (self.scope, host) in _REACHED:
            return
        limit = self.probe_timeout_s if timeout_s is None else min(self.probe_timeout_s, timeout_s)
        error = probe(url, limit)
        if error is not None:
            raise Unreachable(url, self.failed(host, error), f"remembered for {self.ttl_s / 60:.0f} min")
        self.reached(host)

    def failures(self) -> list[Failure]:
        """This process's failures for this cache, within the TTL (oldest first): what the results' notes name."""
        now = self.clock()
        mine = [f for (scope, _), f in _FAILED.items() if scope == self.scope and now - f.at < self.ttl_s]
        return sorted(mine, key=lambda f: f.at)


def failures_note(failures: list[dict[str, Any]], cache: str) -> str:
    """The results' note on unreachable hosts (``failures``: the ``unreachable_sources`` setting's entries)."""
    hosts = "; ".join(f"{f['host']} since {f['since']} ({f['error']})" for f in failures)
    return (
        f"task-data hosts unreachable: {hosts}. The splits they serve came from another source or were left out. "
        f"Each failure is kept in {Path(cache) / FILE_NAME} for {TTL_S / 3600:.0f} h, so later runs skip these hosts "
        f"at once; to try them again set {RETRY_ENV}=1, pass cgpt eval --retry-sources, or delete that file. "
        f"Without the network, put the pinned files into {Path(cache) / 'downloads'} or pass --data with a local "
        "folder (docs/evaluation.md)"
    )


class SourcesUnreachable(DataError):
    """No mirror of a file could be reached; ``short`` is the message without the way out (for one-line warnings)."""

    def __init__(self, name: str, causes: list[Unreachable], hint: str) -> None:
        hosts = ", ".join(dict.fromkeys(c.failure.host for c in causes))
        first = causes[0]
        self.short = f"{name}: {hosts} unreachable ({first.failure.error}; {first.origin}; {RETRY_HINT})"
        super().__init__(f"{self.short}; {hint}")
