"""What the flows put into Prefect: DVC's output without progress-bar updates, a distinct state for
a stage DVC skipped, an experiment's flow run named after it."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

import flows.pipeline as pipeline_module
from flows.console import ConsoleLines
from flows.pipeline import pipeline_run_name, repro_state, stream

BARS = textwrap.dedent(
    """
    import time
    from tqdm import tqdm
    print("Running stage 'train':", flush=True)
    for _ in tqdm(range(50), desc="train", mininterval=0):
        time.sleep(0.001)
    for _ in tqdm(range(50), desc="validation", leave=False, mininterval=0):
        time.sleep(0.001)
    bar = tqdm(total=40, desc="eval", mininterval=0)
    for i in range(40):
        bar.update(1)
        if i == 20:
            tqdm.write("half way")
    bar.close()
    print("done", flush=True)
    """
)


def _run_bars(tmp_path) -> subprocess.Popen[bytes]:
    script = tmp_path / "bars.py"
    script.write_text(BARS)
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)


def test_real_tqdm_output_becomes_one_line_per_bar(tmp_path, monkeypatch):
    """``stream`` on a process drawing tqdm bars into the pipe (the flows' case): each bar's final
    state once, the other lines as they are, none of the ~150 carriage-return updates."""
    records: list[str] = []
    logger = logging.getLogger("test-flow-logs")
    monkeypatch.setattr(logger, "info", records.append)
    monkeypatch.setattr(pipeline_module, "get_run_logger", lambda: logger)
    lines = stream(_run_bars(tmp_path), "bars")
    assert lines == records
    assert lines[0] == "Running stage 'train':" and lines[-1] == "done"
    assert [line.split(":")[0] for line in lines[1:-1]] == ["train", "validation", "eval", "half way", "eval"]
    assert "50/50" in lines[1] and "50/50" in lines[2] and "40/40" in lines[-2]  # the bars' final states


def test_the_raw_bytes_held_every_update(tmp_path):
    raw = _run_bars(tmp_path).communicate()[0].decode()
    assert raw.count("\r") > 100  # what the log held before: one line per update


def test_a_long_bar_has_a_heartbeat():
    now = [0.0]
    console = ConsoleLines(every=60, clock=lambda: now[0])
    out = []
    for step in range(1, 11):
        now[0] = step * 15.0  # an update every 15 s
        out += console.feed(f"\rtrain: {step}/10")
    out += console.feed("\n")
    assert out == ["train: 3/10", "train: 7/10", "train: 10/10"]  # a state is whole at the next carriage return


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (["plain\n", "two\r\n"], ["plain", "two"]),
        (["\rbar 1", "\rbar 2\r", "\nnext"], ["bar 2", "next"]),  # \r\n split over two reads
        (["no newline at the end"], ["no newline at the end"]),
        (["\rbar 1\rbar 2"], ["bar 2"]),  # the output ends in a bar
        (["\r    \r\n", "\n"], []),  # blank lines stay out
    ],
)
def test_chunks_as_they_come(chunks, expected):
    console = ConsoleLines()
    out = [line for chunk in chunks for line in console.feed(chunk)] + console.close()
    assert out == expected


def test_a_stage_dvc_skipped_has_its_own_state():
    skipped = repro_state(["Stage 'train' didn't change, skipping"])
    ran = repro_state(["Running stage 'train':", "> python -m stages.train"])
    assert skipped.is_completed() and skipped.name == "Up to date" and skipped.data == "up to date"
    assert ran.is_completed() and ran.name == "Completed" and ran.data == "ran"


@pytest.mark.parametrize(
    ("parameters", "name"),
    [
        ({"set_params": ["train.lr=0.001"], "exp_name": "lr-1e-3"}, "experiment lr-1e-3"),
        ({"set_params": ["train.lr=0.001", "train.max_steps=400"], "exp_name": None}, None),
        ({"set_params": [], "exp_name": None}, "fiery-dace"),
        ({}, "fiery-dace"),
    ],
)
def test_an_experiment_run_is_named_after_it(parameters, name):
    expected = name or "experiment train.lr=0.001 train.max_steps=400"
    assert pipeline_run_name(parameters, "fiery-dace") == expected
