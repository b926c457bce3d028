"""An experiment flow run has one Prefect task per DVC stage, as DVC reaches them: a stage DVC skipped
ends ``Up to date``, one that ran ``Completed``, the stage DVC failed in ``Failed`` (and the flow with
it). A real Prefect test server; a script stands in for ``dvc exp run`` and prints what it prints."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from paths import REPO
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

from cgpt.tracking.runs import source_name
from flows.pipeline import STAGE_HEADER, StageLog, experiment_args, stage_tasks

DVC_EXP_RUN = textwrap.dedent(
    """
    import sys, time
    from tqdm import tqdm
    print("Reproducing experiment 'lr-1e-3'", flush=True)
    print("'data/corpus.dvc' didn't change, skipping", flush=True)
    print("Stage 'download' didn't change, skipping", flush=True)
    print("Stage 'clean' is cached - skipping run, checking out outputs", flush=True)
    print("Running stage 'train':", flush=True)
    print("> python -m stages.train", flush=True)
    for _ in tqdm(range(30), desc="train", mininterval=0):
        time.sleep(0.001)
    print("Running stage 'evaluate':", flush=True)
    print("val: loss 5.3741 nats/token", flush=True)
    if sys.argv[1] == "fail":
        print("ERROR: failed to reproduce 'evaluate': failed to run: python -m stages.evaluate", flush=True)
        sys.exit(1)
    print("Ran experiment(s): lr-1e-3", flush=True)
    """
)


@flow
def fake_experiment(script: str, mode: str) -> dict[str, str]:
    proc = subprocess.Popen([sys.executable, script, mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
    log = StageLog(proc, "dvc exp run")
    outcome = stage_tasks(log)
    assert log.lines[-1] == "Ran experiment(s): lr-1e-3"
    return outcome


def _task_runs(flow_run_id, count: int) -> dict[str, tuple[str, str]]:
    """The flow run's task runs once the server has recorded ``count`` of them in a final state
    (Prefect 3 records task runs from events, a moment after the flow returns)."""
    with get_client(sync_client=True) as client:
        for _ in range(600):
            runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
            )
            if len(runs) >= count and all(r.state is not None and r.state.is_final() for r in runs):
                break
            time.sleep(0.1)
    return {r.name: (r.state.type.value, r.state.name) for r in runs}


@pytest.mark.slow  # a Prefect test server for the session (~25 s to start)
@pytest.mark.parametrize("mode", ["ok", "fail"])
def test_one_task_per_stage_with_its_own_state(harness, tmp_path, mode):
    script = tmp_path / "dvc_exp_run.py"
    script.write_text(DVC_EXP_RUN)
    state = fake_experiment(str(script), mode, return_state=True)
    tasks = _task_runs(state.state_details.flow_run_id, 4)
    expected = {
        "dvc exp run · download": ("COMPLETED", "Up to date"),
        "dvc exp run · clean": ("COMPLETED", "Up to date"),
        "dvc exp run · train": ("COMPLETED", "Completed"),
        "dvc exp run · evaluate": ("COMPLETED", "Completed") if mode == "ok" else ("FAILED", "Failed"),
    }
    assert tasks == expected
    if mode == "ok":
        assert state.result() == {"download": "up to date", "clean": "up to date", "train": "ran", "evaluate": "ran"}
    else:
        assert state.is_failed()


def test_stage_headers_and_the_experiment_command():
    assert STAGE_HEADER.match("Running stage 'member-train@f8':").group("ran") == "member-train@f8"
    assert STAGE_HEADER.match("Stage 'train' didn't change, skipping").group("skipped") == "train"
    assert STAGE_HEADER.match("'data.dvc' didn't change, skipping") is None
    assert experiment_args(["train.lr=0.001"], "lr-1e-3", ["train"], False, True) == [
        "exp", "run", "--temp", "--set-param", "++train.lr=0.001", "--name", "lr-1e-3", "--allow-missing", "train"
    ]  # fmt: skip


@flow
def _source_of_a_run_opened_in_a_flow(root: str) -> str:
    return source_name(Path(root), ["/venv/lib/python3.11/site-packages/prefect/engine.py"])


@pytest.mark.slow
def test_a_run_opened_in_a_flow_run_has_the_flow_file_as_source(harness):
    """A worker runs a flow as ``python -m prefect.engine``: the MLflow runs the flow opens (a family's,
    a sweep's) name the flow's file as their Source, not ``engine.py``."""
    assert _source_of_a_run_opened_in_a_flow(str(REPO)) == "tests/unit/flows/test_experiment_tasks.py"
