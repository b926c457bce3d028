"""Robust HTTP downloads of large files: resume, retry with backoff, verify, rename atomically.

``fetch_file(url, dest)`` streams into ``<dest>.part``. A rerun after a failure (or a dropped
connection within one run) resumes the partial file with an HTTP ``Range`` request; a server that
ignores ``Range`` (answers 200) restarts the file from byte 0. Connection errors, timeouts,
incomplete bodies and 5xx/408/429 answers are retried with exponential backoff (``backoff_s``,
doubling, capped at 60 s); ``retries`` counts consecutive failed attempts that received no new
bytes, so a slow, flaky mirror still finishes a 15 GB shard. Any other 4xx fails at once with one
line naming the URL and the status. The finished file is checked against ``size`` and ``sha256``
(a mismatch deletes the partial file) and renamed to ``dest``; a small ``<dest>.done`` record
(url, bytes, sha256) lets a rerun reuse ``dest`` without hashing 15 GB again.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3

from cgpt.core.errors import DataError
from cgpt.core.fsutil import read_json_if_valid, sha256_file

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_BACKOFF_S = 60.0
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504}) | frozenset(range(500, 600))
USER_AGENT = "cgpt-download/1 (+https://github.com/; python-requests)"


@dataclass
class FetchResult:
    """What :func:`fetch_file` did: the final path, its size and sha256, and the network work."""

    path: Path
    bytes: int
    sha256: str
    downloaded_bytes: int = 0  # bytes received over the network in this call
    resumed_from: int = 0  # size of the partial file this call started from
    attempts: int = 0  # HTTP requests made (0: reused a finished file)
    seconds: float = 0.0
    cached: bool = False


class _Retry(Exception):
    """A transient failure: retry after backoff."""


class RetriesExhausted(DataError):
    """Transient failures (connection errors, timeouts, 5xx) outlasted ``retries``; ``downloaded_bytes``:
    what this call received before giving up (0: the server never sent a byte of the file)."""

    def __init__(self, message: str, downloaded_bytes: int) -> None:
        super().__init__(message)
        self.downloaded_bytes = downloaded_bytes


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def done_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".done")


def fetch_file(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 5,
    timeout_s: float = 60.0,
    backoff_s: float = 1.0,
    progress: bool = True,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Download ``url`` to ``dest`` (resuming, retrying, verifying); see the module docstring."""
    dest = Path(dest)
    sha256 = sha256.lower() if sha256 else None
    t0 = time.perf_counter()
    reused = _reuse_finished(url, dest, sha256, size)
    if reused is not None:
        return reused
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    own = session is None
    sess = session or requests.Session()
    res = FetchResult(path=dest, bytes=0, sha256="", resumed_from=part.stat().st_size if part.exists() else 0)
    failures = 0
    try:
        while True:
            res.attempts += 1
            got_before = res.downloaded_bytes
            try:
                total = _attempt(sess, url, part, size, timeout_s, progress, res)
                break
            except _Retry as exc:
                if res.downloaded_bytes > got_before:
                    failures = 0  # progress was made: a flaky but working mirror keeps going
                failures += 1
                if failures > retries:
                    raise RetriesExhausted(
                        f"{url}: download failed after {failures} attempts ({exc}); the partial file "
                        f"{part} is kept, rerun to resume (or raise download.retries / timeout_s)",
                        res.downloaded_bytes,
                    ) from None
                delay = min(backoff_s * 2 ** (failures - 1), MAX_BACKOFF_S)
                log.warning("%s: %s; retry %d/%d in %.1fs", url, exc, failures, retries, delay)
                sleep(delay)
    finally:
        if own:
            sess.close()
    have = part.stat().st_size
    if total is not None and have != total:  # pragma: no cover - _attempt guarantees this
        raise DataError(f"{url}: got {have} bytes, the server announced {total}; rerun to resume")
    if size is not None and have != size:
        part.unlink(missing_ok=True)
        raise DataError(
            f"{url}: size mismatch (expected {size} bytes, got {have}); the partial file was deleted; "
            f"check size: in params.yaml or the mirror"
        )
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256:
        part.unlink(missing_ok=True)
        raise DataError(
            f"{url}: sha256 mismatch (expected {sha256}, got {digest}); the partial file was deleted; "
            f"check sha256: in params.yaml or the mirror"
        )
    os.replace(part, dest)
    res.bytes, res.sha256 = have, digest
    res.seconds = time.perf_counter() - t0
    _write_done(dest, {"url": url, "bytes": have, "sha256": digest})
    return res


def _reuse_finished(url: str, dest: Path, sha256: str | None, size: int | None) -> FetchResult | None:
    """A finished ``dest`` from an earlier run, if its ``.done`` record matches; else None."""
    done = done_path(dest)
    if not (dest.is_file() and done.is_file()):
        return None
    rec = read_json_if_valid(done)
    try:
        n, digest = int(rec["bytes"]), str(rec["sha256"])  # type: ignore[index]
    except (ValueError, KeyError, TypeError):
        return None
    if dest.stat().st_size != n or (size is not None and n != size) or (sha256 is not None and digest != sha256):
        log.info("%s: cached %s does not match (size/sha256); downloading again", url, dest)
        dest.unlink(missing_ok=True)
        done.unlink(missing_ok=True)
        return None
    return FetchResult(path=dest, bytes=n, sha256=digest, cached=True)


def _write_done(dest: Path, rec: dict[str, Any]) -> None:
    tmp = done_path(dest).with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, done_path(dest))


def _content_range_total(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) from ``Content-Range: bytes start-end/total`` (``*`` total -> None)."""
    if not value or not value.startswith("bytes "):
        return None, None
    spec = value[6:]
    rng, _, tot = spec.partition("/")
    start = None
    if rng != "*":
        try:
            start = int(rng.split("-", 1)[0])
        except ValueError:
            start = None
    try:
        total = int(tot) if tot and tot != "*" else None
    except ValueError:
        total = None
    return start, total


def _attempt(
    sess: requests.Session, url: str, part: Path, size: int | None, timeout_s: float, progress: bool, res: FetchResult
) -> int | None:
    """One request: append to ``part`` until the body ends. Returns the total size if known."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # a stale partial of some other file
        part.unlink()
        have = 0
    headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = sess.get(url, headers=headers, stream=True, timeout=(timeout_s, timeout_s), allow_redirects=True)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retry(_short(exc)) from None
    except requests.RequestException as exc:
        raise DataError(f"{url}: request failed ({_short(exc)}); check the URL") from None
    with resp:
        status = resp.status_code
        if status == 416 and have:  # range not satisfiable: the partial is complete or too long
            _, total = _content_range_total(resp.headers.get("Content-Range"))
            if total is not None and have == total:
                return total
            part.unlink()
            raise _Retry(f"HTTP 416 for a resume from byte {have}; restarting the file")
        if status in RETRY_STATUS:
            raise _Retry(f"HTTP {status} {resp.reason or ''}".strip())
        if status >= 400 or status not in (200, 206):
            raise DataError(
                f"{url}: HTTP {status} {resp.reason or ''}".rstrip()
                + (
                    "; the file is not at this URL, check the mirror / base_url"
                    if status == 404
                    else "; check the URL and access"
                )
            )
        if status == 206:
            start, total = _content_range_total(resp.headers.get("Content-Range"))
            if start != have:
                part.unlink(missing_ok=True)
                raise _Retry(f"server resumed at byte {start}, expected {have}; restarting the file")
            mode = "ab"
        else:  # 200: the whole file (the server ignored Range, or we asked for all of it)
            if have:
                log.info("%s: server ignored the Range request; restarting from byte 0", url)
            have = 0
            clen = resp.headers.get("Content-Length")
            total = int(clen) if clen and clen.isdigit() else None
            mode = "wb"
        encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        if encoded:  # the server compressed on the fly despite Accept-Encoding: identity
            total, mode, have = None, "wb", 0
        expected = total if total is not None else size
        bar = _bar(progress, expected, have, part.name.removesuffix(".part"))
        got = 0
        try:
            with open(part, mode) as fh:
                try:
                    for chunk in _body_chunks(resp, decode=encoded):
                        try:
                            fh.write(chunk)
                        except OSError as exc:
                            raise DataError(f"{part}: cannot write ({exc}); check free disk space") from None
                        got += len(chunk)
                        res.downloaded_bytes += len(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                    # connection reset, read timeout, body shorter than Content-Length
                    raise _Retry(f"connection lost after {have + got} bytes ({_short(exc)})") from None
        finally:
            if bar is not None:
                bar.close()
        if total is not None and have + got < total:
            raise _Retry(f"incomplete body: {have + got} of {total} bytes")
        if total is not None and have + got > total:
            part.unlink(missing_ok=True)
            raise _Retry(f"server sent {have + got} bytes, more than the announced {total}; restarting the file")
        return total


def _body_chunks(resp: requests.Response, decode: bool):
    """The body as it arrives. ``read1`` hands over every byte received before a connection drops
    (``iter_content`` would discard a partly filled chunk), so the resume starts exactly there."""
    raw = resp.raw
    if decode or not hasattr(raw, "read1"):
        yield from (c for c in resp.iter_content(CHUNK) if c)
        return
    while True:
        chunk = raw.read1(CHUNK, decode_content=False)
        if not chunk:
            return
        yield chunk


def _bar(progress: bool, total: int | None, initial: int, name: str):
    if not progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        leave=False,
        dynamic_ncols=True,
        miniters=1,
    )


def _short(exc: BaseException) -> str:
    """One line of an exception (requests/urllib3 errors nest long reprs)."""
    text = str(exc).replace("\n", " ")
    return f"{type(exc).__name__}: {text[:200]}"
