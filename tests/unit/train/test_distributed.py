"""Distributed training: the same math at any world size, checkpoints across world sizes, launching.

The multi-process tests run gloo ranks on the CPU, one thread each, with the tiny model of
tests/unit/train/test_train_loop.py (1 layer, d 32, seq 16, batch 4 in micro-batches of 1, 12 steps).

Tolerance (fp32, gloo, measured on this setup): the loss of every logged step agrees with one
process to within 1e-7 (asserted <= 1e-5), and the final weights to within 3.3e-5 (asserted
<= 1e-4, lr 1e-2): the ranks add the same gradients in another order, and AdamW's m / sqrt(v)
magnifies rounding in coordinates whose gradients are near zero.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from distributed_helpers import losses, max_weight_diff, mini_project, train_ranks
from e2e_project import REPO, copy_project, dvc, files_bytes, read_params, write_params
from processes import free_port
from test_train_loop import pattern, setup, write_tokens

from cgpt.config import parse_params
from cgpt.core.errors import ConfigError, TrainingError
from cgpt.train.checkpoint import list_checkpoints, load_model_dir, read_checkpoint_state, verify_checkpoint
from cgpt.train.launch import job_failure
from cgpt.train.loop import train

LOSS_TOL = 1e-5
WEIGHT_TOL = 1e-4


def _tokens(root: Path) -> Path:
    return write_tokens(root, {"train": pattern(5_000, 1), "val": pattern(500, 1)})


def _setup():
    s = setup()
    return replace(s, train=s.train.model_copy(update={"micro_batch_size": 1}))  # accumulation on every rank


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The uninterrupted single-process run every distributed run is compared with."""
    root = tmp_path_factory.mktemp("one")
    tokens = _tokens(root / "tok")
    result = train(_setup(), tokens, root / "run", progress=False)
    return SimpleNamespace(tokens=tokens, history=result.history, state=result.state_dict(), root=root)


def _assert_same_run(history, state, reference) -> None:
    ref = losses(reference.history)
    got = losses(history)
    assert got.keys() == ref.keys() == {3, 6, 9, 12}
    dloss = max(abs(got[k] - ref[k]) for k in ref)
    dw = max_weight_diff(state, reference.state)
    print(f"max |dloss| {dloss:.2e}, max |dw| {dw:.2e}")
    assert dloss <= LOSS_TOL and dw <= WEIGHT_TOL


# ---- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "distributed, expected",
    [
        ({"nproc_per_node": 2}, "strategy = 'none': nproc_per_node = 2 and nnodes = 1 need strategy ddp or fsdp"),
        ({"strategy": "ddp", "nnodes": 2}, "nnodes = 2: needs rdzv_endpoint"),
        ({"strategy": "ddp", "rdzv_endpoint": "node0"}, "expected host:port"),
        ({"strategy": "fsdp", "nproc_per_node": 3}, "global batch of 16 sequences does not divide by the world size 3"),
        ({"strategy": "ddp", "backend": "mpi"}, "train.distributed.backend = 'mpi'"),
    ],
)
def test_distributed_params_are_validated_in_one_line(distributed, expected):
    with pytest.raises(ConfigError) as exc:
        parse_params({"train": {"distributed": distributed}})
    assert expected in str(exc.value) and "\n" not in str(exc.value)


def test_distributed_params_defaults_and_auto():
    p = parse_params({})
    assert p.train.distributed.strategy == "none" and not p.train.distributed.launched
    assert p.train.precision == "auto"
    auto = parse_params({"train": {"distributed": {"strategy": "fsdp", "nproc_per_node": "auto"}}})
    assert auto.train.distributed.nproc_per_node == "auto"


def test_only_the_named_rank_is_killed_by_a_rank_qualified_fault(tmp_path):
    code = "from cgpt.faults import fault_point; fault_point('train.step'); print('survived')"
    env = {**os.environ, "CGPT_FAULT": "rank1:train.step@1"}
    for rank, dies in (("0", False), ("1", True)):
        proc = subprocess.run([sys.executable, "-c", code], env={**env, "RANK": rank}, capture_output=True, text=True)
        assert (proc.returncode == -signal.SIGKILL) == dies, proc
        assert ("survived" in proc.stdout) != dies


def _failure(exitcode, kind=None, line="", pid=10):
    data = {"cgpt": {"kind": kind, "line": line, "exit": exitcode}} if kind else {}
    return SimpleNamespace(exitcode=exitcode, error_file_data=data, pid=pid)


def test_the_launcher_reports_the_root_cause_in_one_line():
    killed = {0: _failure(-signal.SIGTERM), 1: _failure(-signal.SIGKILL, pid=42)}
    err = job_failure(killed, 2)
    assert isinstance(err, TrainingError) and "rank 1 of 2 (pid 42) was killed by SIGKILL (signal 9)" in str(err)
    user = {0: _failure(1, "peer", "lost contact with another rank (...)"), 1: _failure(2, "user", "disk full")}
    assert str(job_failure(user, 2)) == "disk full"
    stopped = {0: _failure(130, "interrupt", "stopped after step 9"), 1: _failure(130, "interrupt", "stopped")}
    assert isinstance(job_failure(stopped, 2), KeyboardInterrupt)
    bug = {3: _failure(1, "bug", "ZeroDivisionError: division by zero"), 0: _failure(-signal.SIGTERM)}
    assert "rank 3 of 4 failed: ZeroDivisionError" in str(job_failure(bug, 4))


def test_rank_shares_tile_the_global_batch():
    from cgpt.train.sampler import ChunkSampler

    class Stream:
        def __len__(self) -> int:
            return 17 * 40

        def read(self, start: int, length: int) -> np.ndarray:
            return np.arange(start, start + length)

    s = ChunkSampler(Stream(), seq_len=16, seed=3)
    whole, _ = s.rows(37, 12)
    for world in (1, 2, 3, 4):
        parts = [s.rows(37, 12, part=(r, world))[0] for r in range(world)]
        assert torch.equal(torch.cat(parts), whole)


# ---- same math at any world size ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_give_the_curve_and_weights_of_one_process(one_process, tmp_path, strategy):
    got = train_ranks(2, strategy, _setup(), one_process.tokens, tmp_path / "run")
    _assert_same_run(got["history"], got["state"], one_process)
    ckpt = list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    verify_checkpoint(ckpt)
    state = read_checkpoint_state(ckpt)
    assert state["world_size"] == 2 and state["strategy"] == strategy
    assert (state.get("format") == "dcp") == (strategy == "fsdp")
    if strategy == "fsdp":  # every rank wrote its shard; no whole-model file
        assert {p.name for p in (ckpt / "dcp").iterdir()} == {".metadata", "__0_0.distcp", "__1_0.distcp"}
        assert not (ckpt / "model.safetensors").exists()
    assert all(r.get("mfu", 0) > 0 for r in got["speed"])


@pytest.mark.slow
def test_fsdp_checkpoint_of_two_ranks_resumes_in_one_process(one_process, tmp_path):
    train_ranks(2, "fsdp", _setup(), one_process.tokens, tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-00000012")  # as if killed after step 6
    resumed = train(_setup(), one_process.tokens, tmp_path / "run", progress=False)
    assert resumed.resumed_from_step == 6
    _assert_same_run(resumed.history, resumed.state_dict(), one_process)


@pytest.mark.slow
def test_one_process_checkpoint_resumes_on_two_fsdp_ranks(one_process, tmp_path):
    shutil.copytree(one_process.root / "run", tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-00000012")
    got = train_ranks(2, "fsdp", _setup(), one_process.tokens, tmp_path / "run")
    assert got["resumed"] == 6
    _assert_same_run(got["history"], got["state"], one_process)
    assert read_checkpoint_state(tmp_path / "run" / "checkpoints" / "step-00000012")["format"] == "dcp"


@pytest.mark.slow
def test_compile_gives_the_losses_of_eager(one_process, tmp_path):
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("g++")):
        pytest.skip("torch.compile on the CPU needs a C++ compiler (none on PATH)")
    s = _setup()
    s = replace(s, train=s.train.model_copy(update={"compile": True}))
    compiled = train(s, one_process.tokens, tmp_path, progress=False)
    _assert_same_run(compiled.history, compiled.state_dict(), one_process)


def test_activation_checkpointing_gives_the_same_numbers(one_process, tmp_path):
    s = _setup()
    s = replace(s, train=s.train.model_copy(update={"activation_checkpointing": True}))
    ac = train(s, one_process.tokens, tmp_path, progress=False)
    assert losses(ac.history) == losses(one_process.history)  # the same ops, recomputed
    assert max_weight_diff(ac.state_dict(), one_process.state) == 0.0


# ---- launching -------------------------------------------------------------------------------


def _mini(root: Path, **distributed) -> Path:
    return mini_project(root, lambda d: _tokens(d), distributed or None)


def _curve(root: Path) -> dict[int, float]:
    lines = (root / "runs/default/plots/train.csv").read_text().splitlines()[1:]
    return {int(r.split(",")[0]): float(r.split(",")[1]) for r in lines}


def _run(cmd: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("CGPT_FAULT", "MLFLOW_TRACKING_URI")}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_two_node_rendezvous_on_one_machine(tmp_path):
    """Two torchrun agents (--nnodes 2, one process each) meet through c10d on 127.0.0.1 and train the
    mini project as one DDP job; the curve is one process's."""
    single = _mini(tmp_path / "single")
    proc = _run([sys.executable, "-m", "cgpt.cli", "train", "--project", str(single)], cwd=REPO)
    assert proc.wait() == 0, proc.stderr.read()
    project = _mini(tmp_path / "two-nodes", strategy="ddp")
    port = free_port()
    node = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "cgpt-test",
        "-m", "cgpt.stages.train", str(project),
    ]  # fmt: skip
    nodes = [_run(node, cwd=REPO) for _ in range(2)]
    outs = [(n.wait(), n.stderr.read()) for n in nodes]
    assert [code for code, _ in outs] == [0, 0], outs
    ref, got = _curve(single), _curve(project)
    assert got.keys() == ref.keys() and max(abs(got[k] - ref[k]) for k in ref) <= LOSS_TOL
    timing = json.loads((project / "runs/default/timing.json").read_text())
    assert timing["world_size"] == 2 and timing["strategy"] == "ddp"


@pytest.mark.slow
def test_a_user_mistake_in_the_ranks_is_one_line_with_the_exit_status(tmp_path):
    project = _mini(tmp_path / "p", strategy="fsdp", nproc_per_node=2)
    (project / "runs/default").mkdir(parents=True)
    (project / "runs/default/checkpoints").write_text("not a folder")
    proc = _run([sys.executable, "-m", "cgpt.cli", "train", "--project", str(project)], cwd=REPO)
    code, err = proc.wait(), proc.stderr.read()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "cannot be the checkpoints folder" in errors[0], err
    assert "Traceback" not in err and " E" not in err.replace("error:", "")  # no agent log lines either


@pytest.mark.slow
def test_kill_9_of_rank_0_reports_on_a_line_of_its_own_not_after_its_progress_bar(tmp_path):
    project = _mini(tmp_path / "p", strategy="ddp", nproc_per_node=2)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [sys.executable, "-m", "cgpt.cli", "train", "--project", str(project)], cwd=REPO, capture_output=True,
        text=True, env={**env, "CGPT_FAULT": "rank0:train.step@3"},
    )  # fmt: skip
    lines = proc.stderr.split("\n")  # not splitlines(): a bar redrawn with \r must not count as a line end
    errors = [line for line in lines if "error:" in line]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith("error: rank 0 of 2 (pid ") and "SIGKILL" in errors[0], proc.stderr[-3000:]


# ---- the real pipeline ------------------------------------------------------------------------


def _fresh_training(built_project: Path, dst: Path, distributed: dict | None) -> Path:
    """A copy of the built tiny pipeline whose training (and MLflow store) starts over."""
    project = copy_project(built_project, dst)
    shutil.rmtree(project / "runs/default/checkpoints")
    for f in ("mlflow.db", "runs/default/mlflow_run.json"):
        (project / f).unlink()
    shutil.rmtree(project / "mlartifacts", ignore_errors=True)
    params = read_params(project)
    if distributed is None:
        params["train"].pop("distributed", None)
    else:
        params["train"]["distributed"] = distributed
    write_params(project, params)
    return project


def _mlflow_model_runs(project: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    return client, client.search_runs([client.get_experiment_by_name("cgpt").experiment_id])


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_dvc_repro_with_two_ranks_gives_the_one_process_curve_and_one_mlflow_run(built_project, tmp_path, strategy):
    project = _fresh_training(built_project, tmp_path / "p", {"strategy": strategy, "nproc_per_node": 2})
    dvc("repro", cwd=project)
    ref, got = _curve(built_project), _curve(project)
    assert got.keys() == ref.keys() == set(range(10, 61, 10))
    assert max(abs(got[k] - ref[k]) for k in ref) <= LOSS_TOL
    _, state, _ = load_model_dir(project / "runs/default/model")
    _, ref_state, _ = load_model_dir(built_project / "runs/default/model")
    assert max_weight_diff(state, ref_state) <= WEIGHT_TOL
    client, runs = _mlflow_model_runs(project)
    assert len(runs) == 1  # rank 0 alone opened it; evaluate and export logged into it
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["cgpt.world_size"] == "2"
    assert run.data.params["distributed.strategy"] == strategy
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == list(range(10, 61, 10))
    assert {"val_xent", "max_abs_logit_diff", "train/mfu"} <= set(run.data.metrics)
    timing = json.loads((project / "runs/default/timing.json").read_text())
    assert timing["world_size"] == 2 and timing["strategy"] == strategy and timing["mfu"] > 0


@pytest.mark.slow
def test_kill_9_of_one_rank_then_dvc_repro_with_one_process_finishes_like_an_uninterrupted_run(built_project, tmp_path):
    project = _fresh_training(built_project, tmp_path / "p", {"strategy": "ddp", "nproc_per_node": 2})
    proc = dvc("repro", cwd=project, check=False, extra_env={"CGPT_FAULT": "rank1:train.step@28"})
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "rank 1 of 2" in errors[0] and "SIGKILL" in errors[0], (
        proc.stderr[-3000:]
    )
    assert [p.name for p in list_checkpoints(project / "runs/default/checkpoints")] == ["step-00000020"]
    for ckpt in list_checkpoints(project / "runs/default/checkpoints"):
        verify_checkpoint(ckpt)
    assert not [p for p in Path("/proc").glob("[0-9]*") if _is_rank_of(p, project)]  # the other rank is gone too
    params = read_params(project)
    params["train"].pop("distributed")  # one process now
    write_params(project, params)
    dvc("repro", cwd=project)
    assert json.loads((project / "runs/default/timing.json").read_text())["resumed_from_step"] == 20
    _, state, _ = load_model_dir(project / "runs/default/model")
    _, ref_state, _ = load_model_dir(built_project / "runs/default/model")
    assert max_weight_diff(state, ref_state) <= WEIGHT_TOL
    ref, got = _curve(built_project), _curve(project)
    assert max(abs(got[k] - ref[k]) for k in ref) <= LOSS_TOL
    client, runs = _mlflow_model_runs(project)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")] == list(range(10, 61, 10))
    assert files_bytes(project, "runs/default/hf")  # evaluate and export ran on the result


def _is_rank_of(proc_dir: Path, project: Path) -> bool:
    try:
        cmd = (proc_dir / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"cgpt.stages.train" in cmd and str(project).encode() in cmd
