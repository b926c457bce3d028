"""Start the ranks of a distributed training from the stage process itself, so ``dvc repro`` (and the
Prefect flow, which runs it) needs no change when ``train.distributed`` asks for several processes.

The train stage with ``strategy: ddp|fsdp`` and no ``RANK`` in the environment calls
:func:`launch`: it runs torch's elastic agent in-process (``torch.distributed.launcher.api``, what
``torchrun`` runs), which starts ``nproc_per_node`` ranks on this machine, each ``python -m
<module> <args>`` (the module and its arguments are the caller's: the stage names its own rank
entry point and the files it hands over), and joins the other nodes through a c10d rendezvous
(``rdzv_endpoint``; one node needs none). Under ``torchrun``/``srun``/Kubernetes the ranks are
started by them and no launcher is involved. The launcher knows nothing of the stage: what a rank
runs, and the params it reads, are the module's business.

What the launcher adds to torch's agent:

* **One line for the job.** A rank reports its failure in the agent's error file (cgpt.core.runtime)
  instead of printing it; the launcher picks the root cause (a user mistake before a rank
  killed by a signal, before a crash, before a Ctrl-C, before ranks that only lost their peer)
  and prints ``error: <line>`` with the exit status of a single-process run.
* **Ctrl-C / SIGTERM are graceful.** The ranks run in their own sessions (the agent's choice), so
  the launcher forwards the first signal to them as SIGTERM: they agree on a step, write a
  checkpoint there and stop; a second signal stops them at once.
* **Nothing outlives the launcher.** A rank started by it dies with it (``PR_SET_PDEATHSIG``), so a
  ``kill -9`` of ``dvc repro`` cannot leave ranks training (and writing) behind it.
* A ``kill -9`` of one rank makes the agent stop the others; the job fails with one line, and the
  next ``dvc repro`` (at any world size) resumes from the last complete checkpoint.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch

from cgpt.core.errors import ConfigError, TrainingError
from cgpt.core.runtime import RANK_ERRORS_ENV
from cgpt.train.distributed import in_launched_rank
from cgpt.train.params import DistributedParams, check_batches_divide_world

log = logging.getLogger("cgpt.train")

LAUNCHER_ENV = "CGPT_LAUNCHER_PID"
_PRIORITY = {"user": 0, "signal": 1, "bug": 2, "exit": 3, "interrupt": 4, "peer": 5, "stopped": 6}


def needs_launch(dp: DistributedParams) -> bool:
    """True in the stage process of a ddp/fsdp run that nobody launched yet (no ``RANK``)."""
    return dp.launched and not in_launched_rank()


def resolve_nproc(nproc_per_node: int | str, device: str) -> int:
    """``auto``: one rank per visible GPU on CUDA, one process on a CPU."""
    if nproc_per_node != "auto":
        return int(nproc_per_node)
    return max(1, torch.cuda.device_count()) if torch.device(device).type == "cuda" else 1


def launch(
    module: str,
    args: Sequence[str],
    dp: DistributedParams,
    *,
    device: str,
    batches: Iterable[int],
    job_name: str,
) -> None:
    """Run this node's ranks, each ``python -u -m <module> <args>``, and wait for them.

    ``dp``: the ``train.distributed`` section; ``device``: the resolved device (one rank per GPU
    with ``nproc_per_node: auto``); ``batches``: the global batch sizes, which must divide by the
    world size; ``job_name``: names the rendezvous (``cgpt-<job_name>``) unless ``rdzv_id`` does.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    nproc = resolve_nproc(dp.nproc_per_node, device)
    world = nproc * dp.nnodes
    check_batches_divide_world(
        batches,
        world,
        "params.yaml: train.distributed",
        layout=f"{nproc} processes per node x {dp.nnodes} nodes",
        error=ConfigError,
    )
    if dp.rdzv_endpoint:
        endpoint, run_id = dp.rdzv_endpoint, dp.rdzv_id or f"cgpt-{job_name}"
    else:  # one node: a rendezvous on a free local port, as torchrun --standalone
        endpoint, run_id = "localhost:0", dp.rdzv_id or uuid.uuid4().hex
    log.info(
        "launching %d rank(s) on this node (%s, %d node(s), world size %d, rendezvous %s)",
        nproc,
        dp.strategy,
        dp.nnodes,
        world,
        endpoint,
    )
    _quiet_torch_elastic()
    with tempfile.TemporaryDirectory(prefix="cgpt-ranks-") as logs, _forward_signals(), _rank_env():
        config = LaunchConfig(
            min_nodes=dp.nnodes,
            max_nodes=dp.nnodes,
            nproc_per_node=nproc,
            run_id=run_id,
            rdzv_backend="c10d",
            rdzv_endpoint=endpoint,
            max_restarts=0,
            start_method="spawn",
            logs_specs=DefaultLogsSpecs(log_dir=logs),
            signals_to_handle="SIGHUP,SIGQUIT",  # SIGINT/SIGTERM: forwarded to the ranks (_forward_signals)
        )
        try:
            elastic_launch(config, sys.executable)("-u", "-m", module, *args)
        except ChildFailedError as exc:
            end_ranks_line()
            raise job_failure(exc.failures, world) from None
        except RendezvousError as exc:
            raise TrainingError(
                f"rendezvous at {endpoint} failed ({type(exc).__name__}: {str(exc)[:160]}); check that all "
                f"{dp.nnodes} nodes run with the same train.distributed.rdzv_endpoint and can reach it"
            ) from None


def _quiet_torch_elastic() -> None:
    """torch's agent logs each failed rank at ERROR; the launcher reports the job's failure in one
    line instead. (A filter, because torch's logging setup may reset these loggers' levels.)"""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher")):
            logger = logging.getLogger(name)
            if _drop_all not in logger.filters:
                logger.addFilter(_drop_all)


def _drop_all(record: logging.LogRecord) -> bool:
    return False


@contextmanager
def _rank_env() -> Iterator[None]:
    """What the ranks inherit: the launcher's pid (they die with it) and quiet per-rank errors."""
    saved = {k: os.environ.get(k) for k in (LAUNCHER_ENV, RANK_ERRORS_ENV)}
    os.environ[LAUNCHER_ENV] = str(os.getpid())
    os.environ[RANK_ERRORS_ENV] = "file"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _children() -> list[int]:
    """Pids of this process's children (the ranks the agent started), from /proc."""
    pids: list[int] = []
    try:
        tasks = list(Path(f"/proc/{os.getpid()}/task").iterdir())
    except OSError:  # not Linux: nothing to forward to
        return pids
    for task in tasks:
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return pids


@contextmanager
def _forward_signals() -> Iterator[None]:
    """First Ctrl-C/SIGTERM: SIGTERM to every rank (they stop at an agreed step, with a checkpoint);
    the next: again (they stop at once)."""
    if os.name != "posix" or sys.platform == "darwin":
        yield
        return
    count = {"n": 0}

    def forward(signum: int, frame: object) -> None:
        count["n"] += 1
        if count["n"] == 1:
            print(
                f"\n{signal.Signals(signum).name}: stopping the ranks at the next step (again to stop at once)",
                file=sys.stderr,
            )
        for pid in _children():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if count["n"] <= 2 else signal.SIGKILL)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def end_ranks_line() -> None:
    """End the line a rank may have left unfinished on the shared terminal (rank 0's progress bar,
    redrawn in place with ``\\r`` until the rank died), so the job's ``error:`` line starts a line of
    its own. (The launcher's own tqdm bars, none, are not the ones to close: the ranks drew them.)"""
    with suppress(OSError, ValueError):
        sys.stderr.write("\n")
        sys.stderr.flush()


def _kind(failure: Any) -> tuple[str, str, int]:
    """(kind, one line, exit status) of one rank's ProcessFailure."""
    info = failure.error_file_data.get("cgpt") if isinstance(failure.error_file_data, dict) else None
    if isinstance(info, dict) and "kind" in info:
        return str(info["kind"]), str(info.get("line", "")), int(info.get("exit", 1))
    code = int(failure.exitcode)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code in (signal.SIGTERM, signal.SIGINT):
            return "stopped", f"was stopped by {name}", code
        return "signal", f"was killed by {name} (signal {-code})", code
    return "exit", f"exited with status {code} (its output above says why)", code


def job_failure(failures: dict[int, Any], world: int) -> BaseException:
    """The one error of the job: the root cause among the failed ranks (see the module docstring)."""
    ranked = sorted(failures.items(), key=lambda item: (_PRIORITY.get(_kind(item[1])[0], 9), item[0]))
    rank, failure = ranked[0]
    kind, line, _code = _kind(failure)
    if kind == "user":
        return TrainingError(line)
    if kind == "interrupt":
        return KeyboardInterrupt(line)
    if kind == "bug":
        return TrainingError(f"rank {rank} of {world} failed: {line} (traceback above)")
    if kind == "peer":
        return TrainingError(f"rank {rank} of {world} {line}")
    return TrainingError(
        f"rank {rank} of {world} (pid {failure.pid}) {line}; the other ranks were stopped; rerun to resume from "
        "the last complete checkpoint"
    )


def die_with_launcher() -> None:
    """Linux: SIGKILL this rank when the launcher that started it dies (even by SIGKILL); a rank's
    entry point calls it first. Nothing happens in a process this launcher did not start."""
    launcher = os.environ.get(LAUNCHER_ENV)
    if not launcher or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(launcher):  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)
