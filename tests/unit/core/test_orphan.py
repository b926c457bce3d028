"""A stage whose dvc died stops itself (cgpt/core/orphan.py): real processes, a real kill -9 of the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from paths import REPO

from cgpt.core.orphan import should_watch

# the stage: stops at its next "step" on SIGTERM, as the trainer does (graceful_stop)
STAGE = """
import time
from cgpt.core.runtime import graceful_stop, run_main

def work():
    with graceful_stop("the test") as stop_requested:
        print("ready", flush=True)
        while not stop_requested():
            time.sleep(0.05)
        print("checkpoint written", flush=True)
        raise KeyboardInterrupt("stopped after step 3; checkpoint written, rerun to resume")

run_main(work)
"""

# what dvc is here: starts the stage (directly, or through a shell that stays), then waits
DVC = """
import subprocess, sys
subprocess.Popen(sys.argv[1:]).wait()
"""


def run_and_kill_parent(cmd: list[str]) -> tuple[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_STAGE": "train"}
    env.pop("CGPT_WATCH_PARENT", None)
    parent = subprocess.Popen(
        [sys.executable, "-c", DVC, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert parent.stdout is not None and parent.stdout.readline() == "ready\n"
    os.kill(parent.pid, signal.SIGKILL)  # dvc alone: the stage (and a shell) live on
    out, err = parent.communicate()  # EOF once the stage, which holds the pipes too, has ended
    return out, err


@pytest.mark.parametrize("through_shell", [False, True], ids=["direct", "through-a-shell"])
def test_an_orphaned_stage_stops_at_a_step_when_its_dvc_is_killed(tmp_path, through_shell):
    stage = tmp_path / "stage.py"
    stage.write_text(STAGE)
    if through_shell:  # `bash -c "<cmd>; true"` cannot exec the command: the shell stays its parent
        cmd = ["bash", "-c", f"{sys.executable} {stage}; true"]
    else:
        cmd = [sys.executable, str(stage)]
    out, err = run_and_kill_parent(cmd)
    assert out.splitlines()[-1] == "checkpoint written"
    assert "the dvc process that started train" in err and "is gone: stopping" in err
    assert err.strip().splitlines()[-1] == "error: stopped after step 3; checkpoint written, rerun to resume"


def test_only_stages_run_by_dvc_watch_their_parent(monkeypatch):
    monkeypatch.delenv("CGPT_WATCH_PARENT", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert not should_watch()  # `nohup cgpt train &` outlives its shell
    monkeypatch.setenv("DVC_STAGE", "train")
    assert should_watch()
    monkeypatch.setenv("RANK", "1")  # a rank dies with its launcher instead
    assert not should_watch()
    monkeypatch.delenv("RANK")
    monkeypatch.setenv("CGPT_WATCH_PARENT", "0")
    assert not should_watch()
