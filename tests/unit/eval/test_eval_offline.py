"""Offline is quick and quiet: a publisher host that failed is not contacted again by the run, nor by later runs
within the TTL (``<cache>/unreachable.json``); ``CGPT_EVAL_RETRY=1`` tries it again; a missing split is one line.

The hosts are on 127.0.0.1: a closed port (the probe is refused) and a listener that accepts and hangs up
(the probe passes, every HTTP request fails). Contacts are counted, never timed.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from paths import EVAL_FIXTURES
from test_eval_download import FAST, _local_sources, server  # noqa: F401  (a fixture)
from test_eval_pypi import tiny_model  # noqa: F401  (a fixture)

import cgpt.eval.taskdata.publisher as pub
import cgpt.eval.taskdata.reach as reach
from cgpt.eval.downstream import evaluate_tasks, prepare_data
from cgpt.eval.table import table_notes
from cgpt.eval.taskdata import prepare_split
from cgpt.eval.taskdata.publisher import SOURCES, provenance
from cgpt.eval.taskdata.reach import FILE_NAME, RETRY_ENV, SourceMemory

HS_TRAIN = ("hellaswag", "train")


@pytest.fixture(autouse=True)
def new_process(monkeypatch):
    """Each test starts as a fresh process would: no memory of failures, no retry asked for."""
    monkeypatch.delenv(RETRY_ENV, raising=False)
    reach.forget()
    yield
    reach.forget()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def contacts(monkeypatch):
    """Every contact the task data makes with a host: first-contact probes and downloader calls, by URL host."""
    seen: list[str] = []
    real_connect, real_fetch = socket.create_connection, pub.fetch_file

    def connect(address, *args, **kwargs):
        seen.append(f"probe {address[0]}:{address[1]}")
        return real_connect(address, *args, **kwargs)

    def fetch(url, dest, **kwargs):
        seen.append(f"fetch {url}")
        return real_fetch(url, dest, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(pub, "fetch_file", fetch)
    return seen


@pytest.fixture
def hangup():
    """A host that accepts TCP connections and closes them at once (counted): it passes the probe, fails every GET."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.1)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            accepted.append(conn.getpeername())
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.getsockname()[1]}", accepted
    stop.set()
    t.join()
    srv.close()


def _dead(host: str, keys=(("lambada_openai", "test"), ("winogrande", "validation"))) -> dict:
    """SOURCES with the files of ``keys`` on ``host`` (two mirrors there: both are skipped after one failure)."""
    out = dict(SOURCES)
    for key in keys:
        f = SOURCES[key].file
        urls = (f"http://{host}/a/{f.name}", f"http://{host}/b/{f.name}")
        out[key] = replace(SOURCES[key], file=replace(f, urls=urls))
    return out


def test_a_refused_host_is_probed_once_then_skipped_by_the_run_and_by_later_runs(contacts, tmp_path):
    host = f"127.0.0.1:{_closed_port()}"
    sources = _dead(host)
    with pytest.raises(pub.DataError) as ei:
        prepare_split("lambada_openai", "test", tmp_path, sources=sources, order="publisher", fetch_kwargs=FAST)
    # First contact: one short TCP connect, refused; the downloader (retries, backoff) is never started.
    assert contacts == [f"probe {host}"]
    msg = str(ei.value)
    assert "\n" not in msg and f"lambada_test.jsonl: {host} unreachable (ConnectionRefusedError" in msg
    assert "retry with CGPT_EVAL_RETRY=1 or cgpt eval --retry-sources" in msg and "put a copy (sha256" in msg
    record = json.loads((tmp_path / FILE_NAME).read_text())
    assert list(record["hosts"]) == [host] and record["ttl_seconds"] == 3600
    assert record["hosts"][host]["error"].startswith("ConnectionRefusedError") and record["hosts"][host]["at"] > 0
    # Another split on the same host, same process: not contacted again.
    with pytest.raises(pub.DataError, match="failed in this run"):
        prepare_split("winogrande", "validation", tmp_path, sources=sources, order="publisher", fetch_kwargs=FAST)
    assert len(contacts) == 1
    # A later run (a new process) within the hour: the cached failure, no contact.
    reach.forget()
    with pytest.raises(pub.DataError, match=r"cached failure from 0 min ago; retry with CGPT_EVAL_RETRY=1"):
        prepare_split("lambada_openai", "test", tmp_path, sources=sources, order="publisher", fetch_kwargs=FAST)
    assert len(contacts) == 1


def test_retry_env_and_the_ttl_try_the_host_again(contacts, tmp_path, monkeypatch):
    host = f"127.0.0.1:{_closed_port()}"
    sources = _dead(host)

    def attempt(**kw):
        with pytest.raises(pub.DataError):
            prepare_split(
                "lambada_openai", "test", tmp_path, sources=sources, order="publisher", fetch_kwargs=FAST, **kw
            )

    attempt()
    assert len(contacts) == 1
    reach.forget()
    monkeypatch.setenv(RETRY_ENV, "1")  # the file is ignored: tried again, once in this process
    attempt()
    attempt()
    assert len(contacts) == 2
    monkeypatch.delenv(RETRY_ENV)
    reach.forget()
    attempt(retry=True)  # what cgpt eval --retry-sources passes
    assert len(contacts) == 3
    # Past the TTL the file's record no longer counts.
    reach.forget()
    assert SourceMemory(tmp_path).known(host) is not None
    assert SourceMemory(tmp_path, clock=lambda: 1e12).known(host) is None
    # Deleting the file is a retry too.
    reach.forget()
    (tmp_path / FILE_NAME).unlink()
    attempt()
    assert len(contacts) == 4


def test_a_host_that_answers_then_never_serves_is_remembered_after_its_retries(hangup, contacts, tmp_path):
    host, accepted = hangup
    sources = _dead(host)
    with pytest.raises(pub.DataError) as ei:
        prepare_split("lambada_openai", "test", tmp_path, sources=sources, order="publisher", fetch_kwargs=FAST)
    assert "download failed after 2 attempts" in str(ei.value)
    n = len(accepted)
    assert n == 1 + FAST["retries"] + 1  # the probe, then the downloader's attempts on the first mirror only
    assert host in json.loads((tmp_path / FILE_NAME).read_text())["hosts"]  # no byte came: kept for later runs
    for _ in range(2):  # the same run, then a later one
        with pytest.raises(pub.DataError, match=f"{host} unreachable"):
            prepare_split("winogrande", "validation", tmp_path, sources=sources, order="publisher", fetch_kwargs=FAST)
        reach.forget()
    assert len(accepted) == n


def test_a_host_that_answers_again_is_dropped_from_the_file(server, tmp_path, monkeypatch):  # noqa: F811
    sources = _local_sources(server)
    host = reach.host_of(server.url)
    SourceMemory(tmp_path).failed(host, "ConnectionRefusedError: [Errno 111] Connection refused")
    reach.forget()
    with pytest.raises(pub.DataError, match="cached failure"):
        prepare_split("piqa", "validation", tmp_path, sources=sources, order="publisher", fetch_kwargs=FAST)
    assert server.log == []
    monkeypatch.setenv(RETRY_ENV, "1")
    out = prepare_split("piqa", "validation", tmp_path, sources=sources, order="publisher", fetch_kwargs=FAST)
    assert out.read_bytes() == (EVAL_FIXTURES / "piqa" / "validation.jsonl").read_bytes()  # the same bytes
    assert not (tmp_path / FILE_NAME).exists()


def _warm_cache_but_hellaswag_train(cache: Path) -> None:
    """Every split of hellaswag and piqa in the cache, as the publishers' files give them, but HellaSwag's train."""
    for task in ("hellaswag", "piqa"):
        for split in ("validation", "train"):
            if (task, split) == HS_TRAIN:
                continue
            out = cache / task / f"{split}.jsonl"
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(EVAL_FIXTURES / task / f"{split}.jsonl", out)
            out.with_suffix(".source.json").write_text(json.dumps(provenance(SOURCES[(task, split)])))


def _stage_like_run(model, cache: Path) -> tuple[object, list[str]]:
    """What the evaluate stage does: each task's data prepared alone, then all of them scored."""
    for task in ("hellaswag", "piqa"):
        prepare_data([task], [0, 2], None, cache, progress=False)
    res = evaluate_tasks(model, ["hellaswag", "piqa"], [0, 2], cache_dir=cache, progress=False, limit=2)
    return res, table_notes(res)


def test_a_missing_split_is_one_warning_line_and_one_note(tiny_model, contacts, tmp_path, monkeypatch, caplog):  # noqa: F811
    host = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setitem(SOURCES, HS_TRAIN, _dead(host, keys=(HS_TRAIN,))[HS_TRAIN])
    cache = tmp_path / "cache"
    _warm_cache_but_hellaswag_train(cache)
    with caplog.at_level(logging.WARNING):
        res, notes = _stage_like_run(tiny_model, cache)
    assert contacts == [f"probe {host}"]  # three preparations need hellaswag/train: one contact
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    (line,) = warnings
    assert line.startswith(f"hellaswag: no train split (tried the cache {cache}, then pypi: no wheel has HellaSwag's")
    assert f"publisher: hellaswag_train.jsonl: {host} unreachable (ConnectionRefusedError" in line
    assert "retry with CGPT_EVAL_RETRY=1 or cgpt eval --retry-sources" in line and "put a copy" not in line
    assert res.get("hellaswag", 2).fewshot_pool == "validation (train split unavailable)"
    (note,) = [n for n in notes if "unreachable" in n]
    assert note.startswith(f"task-data hosts unreachable: {host} since ") and "ConnectionRefusedError" in note
    assert str(cache / FILE_NAME) in note and "for 1 h" in note and "CGPT_EVAL_RETRY=1" in note
    assert "--retry-sources" in note and "delete that file" in note and str(cache / "downloads") in note
    assert res.settings["unreachable_sources"]["hosts"][0]["host"] == host
    # The next run: no contact at all, the same one line, now a cached failure.
    reach.forget()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _stage_like_run(tiny_model, cache)
    assert len(contacts) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cached failure from 0 min ago" in warnings[0]


def test_a_warm_cache_contacts_nobody_and_records_nothing(tiny_model, contacts, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    _warm_cache_but_hellaswag_train(cache)
    shutil.copy(EVAL_FIXTURES / "hellaswag" / "train.jsonl", cache / "hellaswag" / "train.jsonl")
    (cache / "hellaswag" / "train.source.json").write_text(json.dumps(provenance(SOURCES[HS_TRAIN])))
    res, notes = _stage_like_run(tiny_model, cache)
    assert contacts == [] and not (cache / FILE_NAME).exists()
    assert "unreachable_sources" not in res.settings and notes == []
