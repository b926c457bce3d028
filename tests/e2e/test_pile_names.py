"""The real Pile's 22 subset names (``Wikipedia (en)``, ``Gutenberg (PG-19)``...) end to end.

A Pile-layout mirror (train/00.jsonl.zst, val.jsonl.zst, test.jsonl.zst) is served over HTTP on
127.0.0.1 and `examples/pile.params.yaml` is pointed at it; the whole pipeline must run, and every
name that becomes a key (MLflow metrics, DVC metrics) must be a safe one.
"""

from __future__ import annotations

import functools
import json
import random
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
import zstandard
from e2e_project import REPO, TINY_PARAMS, dvc, new_project, write_params

from cgpt.keys import safe_key

pytestmark = pytest.mark.slow

PILE_SUBSETS = [
    "Pile-CC", "PubMed Central", "Books3", "OpenWebText2", "ArXiv", "Github", "FreeLaw", "StackExchange",
    "USPTO Backgrounds", "PubMed Abstracts", "Gutenberg (PG-19)", "OpenSubtitles", "Wikipedia (en)",
    "DM Mathematics", "Ubuntu IRC", "BookCorpus2", "EuroParl", "HackerNews", "YoutubeSubtitles", "PhilPapers",
    "NIH ExPorter", "Enron Emails",
]  # fmt: skip


def write_zst(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(data))


def docs(rng: random.Random, n: int) -> list[dict]:
    words = [
        "the",
        "of",
        "and",
        "a",
        "to",
        "in",
        "is",
        "was",
        "for",
        "on",
        "that",
        "with",
        "as",
        "by",
        "at",
        "it",
        "from",
        "his",
    ]
    out = []
    for i in range(n):
        name = PILE_SUBSETS[i % len(PILE_SUBSETS)]
        text = " ".join(rng.choice(words) for _ in range(rng.randint(150, 300)))
        out.append({"text": f"{name}: {text}.", "meta": {"pile_set_name": name}})
    return out


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "mirror"
    rng = random.Random(0)
    write_zst(root / "train/00.jsonl.zst", docs(rng, 220))
    write_zst(root / "val.jsonl.zst", docs(rng, 44))
    write_zst(root / "test.jsonl.zst", docs(rng, 44))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pile"
    finally:
        server.shutdown()
        server.server_close()


def test_the_pile_subset_names_run_through_the_whole_pipeline(mirror, tmp_path):
    # the mirror serves its folder at the root; the example's files are relative to base_url
    base = mirror.removesuffix("/pile")
    example = yaml.safe_load((REPO / "examples/pile.params.yaml").read_text())
    for source in example["download"]["sources"]:
        source["base_url"] = base
        if source["name"] == "pile-train":
            source["files"] = ["train/00.jsonl.zst"]
    params = {**TINY_PARAMS, "download": {**example["download"], "retries": 1, "timeout_s": 10, "backoff_s": 0.01}}
    params["train"] = {**TINY_PARAMS["train"], "max_steps": 20, "checkpoint_interval": 20, "eval_interval": 20}
    project = new_project(tmp_path / "p", params)
    write_params(project, params)
    dvc("repro", cwd=project)

    clean = json.loads((project / "metrics/clean.json").read_text())
    assert set(clean["per_source"]) == {safe_key(n) for n in PILE_SUBSETS}
    assert "Wikipedia_en" in clean["per_source"] and "Gutenberg_PG-19" in clean["per_source"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    data_runs = client.search_runs([client.get_experiment_by_name("cgpt-data").experiment_id])
    clean_run = next(r for r in data_runs if r.info.run_name == "clean")
    assert "per_source.Wikipedia_en.documents_in" in clean_run.data.metrics
    assert clean_run.data.metrics["total.documents_in"] == 220 + 44 + 44
