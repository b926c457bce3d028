"""cgpt.data.http against a real HTTP server on 127.0.0.1 (Range, 404, 5xx, dropped connections)."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cgpt.core.errors import DataError
from cgpt.core.fsutil import read_json
from cgpt.data.download.http import done_path, fetch_file, part_path
from cgpt.data.download.params import DownloadParams
from cgpt.data.download.raw import download

PAYLOAD = random.Random(0).randbytes(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
FAST = {"retries": 3, "timeout_s": 5, "backoff_s": 0.01, "progress": False}


class Handler(BaseHTTPRequestHandler):
    """Paths: /ok/<f> (Range ok), /norange/<f> (ignores Range), /flaky/<f> (two 500s, then ok),
    /drop/<f> (first request sends half the body and hangs up, then ok), /wrong/<f> (other bytes),
    /always500/<f>, anything else 404. Every request is recorded in server.log."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        kind = self.path.strip("/").split("/", 1)[0]
        rng = self.headers.get("Range")
        with srv.lock:
            srv.log.append((self.path, rng))
            n = srv.hits[kind] = srv.hits.get(kind, 0) + 1
        body = PAYLOAD
        if kind == "wrong":
            body = bytes(reversed(PAYLOAD))
        elif kind == "flaky" and n <= 2 or kind == "always500":
            return self._send(500, b"boom")
        elif kind not in ("ok", "norange", "drop", "flaky", "wrong", "stall"):
            return self._send(404, b"not found")
        if kind == "stall" and n == 1:  # headers and a little body, then silence past the timeout
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:1000])
            self.wfile.flush()
            srv.release.wait(5)
            self.close_connection = True
            return
        if kind == "drop" and n == 1:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if rng and kind != "norange":
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])
            return
        self._send(200, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.log = []
    srv.hits = {}
    srv.release = threading.Event()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def test_plain_download_verifies_and_writes_done(server, tmp_path):
    dest = tmp_path / "a.jsonl.zst"
    r = fetch_file(f"{server.url}/ok/a.jsonl.zst", dest, sha256=SHA, size=len(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD and r.sha256 == SHA and r.bytes == len(PAYLOAD)
    assert not part_path(dest).exists()
    assert json.loads(done_path(dest).read_text())["sha256"] == SHA
    # a second call reuses the finished file without a request
    before = len(server.log)
    r2 = fetch_file(f"{server.url}/ok/a.jsonl.zst", dest, sha256=SHA, **FAST)
    assert r2.cached and len(server.log) == before


def test_resume_partial_file_with_range(server, tmp_path):
    dest = tmp_path / "b.bin"
    part_path(dest).write_bytes(PAYLOAD[:100_000])
    r = fetch_file(f"{server.url}/ok/b.bin", dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert server.log[-1][1] == "bytes=100000-"
    assert r.resumed_from == 100_000 and r.downloaded_bytes == len(PAYLOAD) - 100_000


def test_server_ignoring_range_restarts(server, tmp_path):
    dest = tmp_path / "c.bin"
    part_path(dest).write_bytes(b"garbage that is not a prefix")
    fetch_file(f"{server.url}/norange/c.bin", dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_complete_partial_gets_416_and_finishes(server, tmp_path):
    dest = tmp_path / "d.bin"
    part_path(dest).write_bytes(PAYLOAD)
    fetch_file(f"{server.url}/ok/d.bin", dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_retry_on_5xx(server, tmp_path):
    dest = tmp_path / "e.bin"
    sleeps: list[float] = []
    r = fetch_file(f"{server.url}/flaky/e.bin", dest, sha256=SHA, sleep=sleeps.append, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert r.attempts == 3 and sleeps == [0.01, 0.02]  # exponential backoff


def test_5xx_gives_up_after_retries(server, tmp_path):
    with pytest.raises(DataError) as ei:
        fetch_file(f"{server.url}/always500/f.bin", tmp_path / "f.bin", **{**FAST, "retries": 2})
    msg = str(ei.value)
    assert "\n" not in msg and "/always500/f.bin" in msg and "3 attempts" in msg and "HTTP 500" in msg
    assert server.hits["always500"] == 3


def test_dropped_connection_is_resumed(server, tmp_path):
    dest = tmp_path / "g.bin"
    r = fetch_file(f"{server.url}/drop/g.bin", dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert r.attempts == 2
    assert server.log[1][1] == f"bytes={len(PAYLOAD) // 2}-"  # the second request resumed


def test_read_timeout_is_retried_and_resumed(server, tmp_path):
    dest = tmp_path / "s.bin"
    r = fetch_file(f"{server.url}/stall/s.bin", dest, sha256=SHA, **{**FAST, "timeout_s": 0.3})
    assert dest.read_bytes() == PAYLOAD and r.attempts == 2
    assert server.log[1][1] == "bytes=1000-"


def test_progress_bar_on_a_tty(server, tmp_path, monkeypatch):
    import io
    import sys

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    fetch_file(f"{server.url}/ok/p.bin", tmp_path / "p.bin", **{**FAST, "progress": True})
    assert (tmp_path / "p.bin").read_bytes() == PAYLOAD
    assert "p.bin" in err.getvalue() and "B/s" in err.getvalue()


def test_404_fails_at_once_with_one_line(server, tmp_path):
    with pytest.raises(DataError) as ei:
        fetch_file(f"{server.url}/missing/h.bin", tmp_path / "h.bin", **FAST)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{server.url}/missing/h.bin: HTTP 404")
    assert server.hits["missing"] == 1  # no retries on 4xx


def test_wrong_checksum_deletes_partial(server, tmp_path):
    dest = tmp_path / "i.bin"
    with pytest.raises(DataError, match="sha256 mismatch") as ei:
        fetch_file(f"{server.url}/wrong/i.bin", dest, sha256=SHA, **FAST)
    assert "\n" not in str(ei.value)
    assert not dest.exists() and not part_path(dest).exists()


def test_wrong_size_deletes_partial(server, tmp_path):
    dest = tmp_path / "j.bin"
    with pytest.raises(DataError, match="size mismatch"):
        fetch_file(f"{server.url}/ok/j.bin", dest, size=len(PAYLOAD) + 1, **FAST)
    assert not dest.exists() and not part_path(dest).exists()


def test_cached_file_with_other_checksum_is_downloaded_again(server, tmp_path):
    dest = tmp_path / "k.bin"
    fetch_file(f"{server.url}/wrong/k.bin", dest, **FAST)  # no checksum given: accepted
    fetch_file(f"{server.url}/ok/k.bin", dest, sha256=SHA, **FAST)  # now pinned: refetched
    assert dest.read_bytes() == PAYLOAD


def test_connection_refused_retries_then_fails(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(DataError, match="download failed after 2 attempts"):
        fetch_file(f"http://127.0.0.1:{port}/x.bin", tmp_path / "x.bin", **{**FAST, "retries": 1})


# ---------------------------------------------------------------------------------------------- stage


def test_url_source_stage_resumes_after_failure(server, tmp_path):
    """A url source: a failed run promotes nothing and keeps finished files; the rerun resumes."""
    out = tmp_path / "data" / "raw"
    common = {"retries": 0, "timeout_s": 5, "backoff_s": 0.01}
    bad = DownloadParams.model_validate(
        {
            **common,
            "sources": [
                {
                    "name": "pile-val",
                    "kind": "url",
                    "base_url": f"{server.url}/ok",
                    "files": ["val.jsonl.zst"],
                    "split": "val",
                    "sha256": {"val.jsonl.zst": SHA},
                },
                {"name": "pile-test", "kind": "url", "urls": [f"{server.url}/gone/test.jsonl.zst"], "split": "test"},
            ],
        }
    )
    with pytest.raises(DataError, match=r"pile-test.*HTTP 404"):
        download(bad, out, progress=False)
    assert not out.exists() and not (out.parent / ".raw.tmp").exists()
    cached = out.parent / ".download-cache" / "url" / "pile-val" / "val.jsonl.zst"
    assert cached.read_bytes() == PAYLOAD

    good = DownloadParams.model_validate(
        {
            **common,
            "sources": [
                bad.sources[0].model_dump(),
                {"name": "pile-test", "kind": "url", "urls": [f"{server.url}/ok/test.jsonl.zst"], "split": "test"},
            ],
        }
    )
    before = server.hits.get("ok", 0)
    stats = download(good, out, progress=False)
    assert server.hits["ok"] == before + 1  # val came from the cache
    m = read_json(out / "manifest.json", missing="")
    assert [(f["path"], f["split"], f["format"], f["pile_set_name"]) for f in m["files"]] == [
        ("pile-val/val.jsonl.zst", "val", "jsonl.zst", "pile-val"),
        ("pile-test/test.jsonl.zst", "test", "jsonl.zst", "pile-test"),
    ]
    assert all(f["sha256"] == SHA and f["bytes"] == len(PAYLOAD) for f in m["files"])
    assert (out / "pile-val" / "val.jsonl.zst").read_bytes() == PAYLOAD
    assert stats["timing"]["sources"]["pile-val"]["downloaded_bytes"] == 0
    assert stats["timing"]["sources"]["pile-test"]["downloaded_bytes"] == len(PAYLOAD)
    assert stats["total"]["files"] == 2 and stats["total"]["bytes"] == 2 * len(PAYLOAD)


def test_parallel_downloads_keep_params_order(server, tmp_path):
    files = [f"train/{i:02d}.jsonl.zst" for i in range(5)]
    p = DownloadParams.model_validate(
        {
            "retries": 2,
            "timeout_s": 5,
            "backoff_s": 0.01,
            "parallel": 3,
            "sources": [
                {
                    "name": "pile-train",
                    "kind": "url",
                    "base_url": f"{server.url}/flaky",
                    "files": files,
                    "split": "train",
                },
            ],
        }
    )
    out = tmp_path / "raw"
    stats = download(p, out, progress=False)
    assert [f["path"] for f in read_json(out / "manifest.json", missing="")["files"]] == [
        f"pile-train/{f}" for f in files
    ]
    assert all((out / "pile-train" / f).read_bytes() == PAYLOAD for f in files)
    assert stats["timing"]["sources"]["pile-train"]["downloaded_bytes"] == 5 * len(PAYLOAD)
