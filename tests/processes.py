"""Processes the end-to-end tests start (servers, workers): a free port on 127.0.0.1, and a stop that
takes the whole process tree down (uvicorn workers, flow runs) so no test leaves a server behind."""

from __future__ import annotations

import contextlib
import socket
import subprocess

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_tree(proc: subprocess.Popen) -> None:
    """Terminate ``proc`` and every process under it; kill what is still alive after 15 s."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        tree = []
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(tree, timeout=15)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait()
