"""``mlflow models serve`` answers, as the README tells a user to run it: a tiny export logged and registered
(the export stage's logging), ``models:/cgpt@champion`` served with the local env manager on 127.0.0.1, and
POST /invocations with a prompt far longer than the model's 32 positions and params that ask for more new
tokens than fit: generated text comes back (before, every request failed with ``IndexError``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from processes import free_port, stop_tree
from tiny_export import log_tiny_model, tiny_export

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
STARTUP_WAIT_S = 300  # a guard against a server that never comes up (it starts in ~20 s): not a speed check


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_mlflow_models_serve_answers_a_prompt_with_params(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from cgpt.tracking.aliases import CHAMPION

    # the export stage's path: logged, registered, and (the first version) made @champion
    uri = log_tiny_model(tmp_path / "store", tiny_export(tmp_path / "export", n_positions=32))
    assert str(MlflowClient(tracking_uri=uri).get_model_version_by_alias("cgpt", CHAMPION).version) == "1"
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path / "serve.log"
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/cgpt@{CHAMPION}", "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "--workers", "1"]  # fmt: skip
    with log.open("w") as out:
        server = subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_WAIT_S
        while True:
            assert server.poll() is None, f"mlflow models serve exited with {server.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"not serving after {STARTUP_WAIT_S} s:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{base}/ping") as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(1)
        prompt = "Hello world, hello there. " * 40  # ~240 tokens for a 32-position model
        status, answer = _post(
            f"{base}/invocations",
            {"inputs": [prompt], "params": {"max_new_tokens": 500, "do_sample": False, "return_full_text": False}},
        )
        assert status == 200, answer
        assert isinstance(answer["predictions"][0], str) and answer["predictions"][0]
        # the defaults of the params schema (sampling, 8 new tokens here), a seed for a reproducible answer
        first = _post(f"{base}/invocations", {"inputs": ["Generative AI is"], "params": {"seed": 7}})
        again = _post(f"{base}/invocations", {"inputs": ["Generative AI is"], "params": {"seed": 7}})
        assert first[0] == 200 and first == again, first
        assert first[1]["predictions"][0].startswith("Generative AI is")
        # a wrongly typed param is refused with MLflow's 400, not a crash
        status, answer = _post(f"{base}/invocations", {"inputs": ["x"], "params": {"max_new_tokens": "many"}})
        assert status == 400 and "max_new_tokens" in answer["message"]
    finally:
        stop_tree(server)
