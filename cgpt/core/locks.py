"""cgpt's own locks: one writer at a time for each folder a stage writes.

DVC locks its repository while ``dvc repro`` runs, but that lock dies with ``dvc``: a stage left
running after ``dvc`` was killed, a manual ``cgpt train`` beside a ``dvc repro``, or a second
checkout whose ``runs/`` or download cache is the same folder (a symlink, a shared disk) would write
the same files at once — two trainers interleaving checkpoints, two downloads appending to one
``.part`` file, two ``atomic_dir`` builds removing each other's temporary folder.

A stage therefore holds an exclusive lock on each folder it writes (:func:`writing`) for as long as
it runs:

* an OS advisory lock (``fcntl.flock``) on a lock file: the kernel releases it when the process
  ends, however it ends, so a ``kill -9`` never leaves a stale lock behind and nothing ever needs
  to be cleaned up by hand;
* the lock file lives beside the folder it guards, in ``.cgpt-locks/`` of the folder's real parent
  (``runs/.cgpt-locks/<run>.lock``, ``data/.cgpt-locks/raw.lock``): never inside a DVC output (DVC
  replaces or caches those), and wherever a symlink leads, so two checkouts sharing a folder
  share its lock. ``.cgpt-locks/`` is in .gitignore and .dvcignore;
* the lock file's content is a small JSON record of the holder (pid, host, command, since), so a
  second writer fails with one line naming it: :class:`LockHeld`.

Locks are re-entrant within a process (a family member's stage locks its run folder, then calls the
single-model stage, which locks it again). They are advisory: they stop cgpt processes, not other
programs. Without ``fcntl`` (Windows) :func:`writing` holds nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cgpt.core.errors import CgptError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_DIR = ".cgpt-locks"

log = logging.getLogger("cgpt.locks")

# lock file -> [fd, depth] for the locks this process holds (re-entrancy)
_held: dict[str, list[int]] = {}
_guard = threading.Lock()


class LockHeld(CgptError):
    """Another process is writing what this one wants to write."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def lock_file_for(path: Path) -> Path:
    """Where the lock of ``path`` (a folder or file a stage writes) lives: ``.cgpt-locks/<name>.lock``
    in its real parent folder (symlinks resolved, so every path to one folder gives one lock)."""
    real = Path(os.path.realpath(path))
    return real.parent / LOCK_DIR / f"{real.name}.lock"


def _command() -> str:
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    if argv and os.path.basename(argv[0]).startswith("python"):
        argv = ["python", *argv[1:]]
    return " ".join(shlex.join(argv).split())[:200]  # one line, whatever the arguments hold


def _record(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(),
        "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "path": str(path),
    }
    if os.environ.get("DVC_STAGE"):  # set by `dvc repro` for the command it runs
        record["dvc_stage"] = os.environ["DVC_STAGE"]
    return record


def _read_record(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 1 << 16, 0)
        record = json.loads(data.decode("utf-8")) if data else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _shown(path: Path) -> str:
    try:
        return str(Path(os.path.abspath(path)).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def held_message(path: Path, holder: dict[str, Any]) -> str:
    """The one line for a second writer: who holds ``path``, since when, and what to do."""
    pid, host = holder.get("pid"), holder.get("host")
    if not pid:  # the holder has taken the lock and not yet written its record (a few microseconds)
        return f"{_shown(path)} is being written by another cgpt process (it is just starting); wait for it, then rerun"
    here = host == socket.gethostname()
    what = holder.get("command", "?")
    if holder.get("dvc_stage"):
        what += f", dvc stage {holder['dvc_stage']}"
    where = "" if here else f" on host {host}"
    since = holder.get("since", "?")
    line = f"{_shown(path)} is being written by another cgpt process: pid {pid}{where} ({what}) since {since}"
    if here and not _alive(int(pid)):
        return f"{line}; that pid has ended but a child process of it still holds the lock: stop it, then rerun"
    stop = f"kill {pid}" if here else f"kill {pid} on {host}"
    return f"{line}; wait for it to finish or stop it ({stop}, which checkpoints a training), then rerun"


def holder(path: Path) -> dict[str, Any] | None:
    """The record of the process holding ``path``'s lock now, or None when nobody holds it."""
    if fcntl is None:
        return None
    lock = lock_file_for(path)
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_record(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if it is free (never waits)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _acquire(path: Path) -> str:
    """Take ``path``'s lock (or count one more use of it); its key, "" when it cannot be locked."""
    lock = lock_file_for(path)
    key = str(lock)
    with _guard:
        if key in _held:
            _held[key][1] += 1
            return key
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o664)  # never O_TRUNC: the holder's record is in it
        try:
            got = _try_lock(fd)
            record: dict[str, Any] = {}
            # Held: a writer writes its record right after taking the lock, so wait a moment for it,
            # trying the lock again meanwhile: a holder() check holds it for microseconds only, and
            # a writer that just ended has let it go; neither may turn this writer away.
            for _ in range(20 if not got else 0):
                record = _read_record(fd)
                if record.get("pid"):
                    break
                time.sleep(0.05)
                got = _try_lock(fd)
                if got:
                    break
        except OSError as exc:  # a filesystem without locks (some FUSE mounts): go on, and say so
            os.close(fd)
            log.warning("%s: cannot be locked (%s); going on without cgpt's lock on %s", lock, exc, _shown(path))
            return ""
        except BaseException:
            os.close(fd)
            raise
        if not got:
            os.close(fd)
            raise LockHeld(held_message(path, record), record)
        data = json.dumps(_record(path), sort_keys=True).encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        _held[key] = [fd, 1]
        return key


def _release(key: str) -> None:
    if not key:  # not held (see _acquire)
        return
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[key]
        fd = entry[0]
        with suppress(OSError):
            os.ftruncate(fd, 0)  # no record of a holder that is gone
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def writing(*paths: Path) -> Iterator[None]:
    """Hold the lock of every path in ``paths`` (the folders or files a stage writes) until the block
    ends; :class:`LockHeld` (one line naming the holder's pid, host, command and start) if another
    process holds one. Taken in the order given; none is kept when one cannot be had."""
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    with ExitStack() as stack:
        for path in paths:
            key = _acquire(Path(path))
            stack.callback(_release, key)
        yield
