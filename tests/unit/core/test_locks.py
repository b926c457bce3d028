"""cgpt's own locks (cgpt/core/locks.py) between real processes: a second writer gets one line naming
the holder, a kill -9 leaves nothing stale, and a stage refuses to write a folder another one holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO

from cgpt.core.locks import LOCK_DIR, LockHeld, holder, lock_file_for, writing

HOLD = """
import sys
from pathlib import Path
from cgpt.core.locks import writing
with writing(*[Path(p) for p in sys.argv[1:]]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin (or kills this process)
"""


def hold(*paths: Path) -> subprocess.Popen[str]:
    """Another process holding the locks of ``paths`` until its stdin closes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, *map(str, paths)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_the_lock_file_is_beside_the_folder_and_shared_through_a_symlink(tmp_path):
    (tmp_path / "shared" / "runs").mkdir(parents=True)
    (tmp_path / "checkout").mkdir()
    (tmp_path / "checkout" / "runs").symlink_to(tmp_path / "shared" / "runs")
    direct = lock_file_for(tmp_path / "shared" / "runs" / "default")
    assert direct == tmp_path / "shared" / "runs" / LOCK_DIR / "default.lock"
    assert lock_file_for(tmp_path / "checkout" / "runs" / "default") == direct


def test_a_second_writer_fails_in_one_line_naming_the_holder(tmp_path):
    run_dir = tmp_path / "runs" / "default"
    proc = hold(run_dir)
    try:
        with pytest.raises(LockHeld) as info, writing(run_dir):
            pass
        message = str(info.value)
        assert "\n" not in message
        assert f"pid {proc.pid}" in message and "since" in message and "python -c" in message
        assert f"kill {proc.pid}" in message
        assert info.value.holder["pid"] == proc.pid
        assert holder(run_dir)["pid"] == proc.pid
    finally:
        proc.communicate("")
    assert holder(run_dir) is None  # released, and its record erased
    with writing(run_dir):
        assert holder(run_dir)["pid"] == os.getpid()


def test_a_kill_9_leaves_no_stale_lock(tmp_path):
    data = tmp_path / "data" / "raw"
    proc = hold(data)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lock_file_for(data).read_text()  # the dead holder's record is still there...
    assert holder(data) is None  # ...but the kernel released its lock
    with writing(data):
        pass


def test_locks_are_reentrant_in_one_process_and_all_or_nothing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with writing(a), writing(a, tmp_path / "c"):
        pass
    proc = hold(b)
    try:
        with pytest.raises(LockHeld), writing(a, b):
            pass
        other = hold(a)  # `a` was not kept when `b` could not be had
        other.communicate("")
    finally:
        proc.communicate("")


def test_a_stage_refuses_a_run_folder_another_process_writes(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  run_name: default\n")
    proc = hold(tmp_path / "runs" / "default")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "cgpt.cli", "evaluate", "--project", str(tmp_path)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    finally:
        proc.communicate("")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert lines[-1].startswith("error: ") and "runs/default is being written by another cgpt process" in lines[-1]
    assert f"pid {proc.pid}" in lines[-1]


def test_a_momentary_check_does_not_turn_a_writer_away(tmp_path):
    # holder() (a status check, the tests' polling) takes the lock for an instant and writes no record;
    # a writer arriving in that instant waits it out instead of failing against nobody
    import fcntl
    import threading

    target = tmp_path / "runs"
    lock = lock_file_for(target)
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held with no record, as holder() holds it
    release = threading.Timer(0.2, lambda: (fcntl.flock(fd, fcntl.LOCK_UN), os.close(fd)))
    release.start()
    with writing(target):
        assert holder(target)["pid"] == os.getpid()
    release.join()
