"""The sharded clean flow under Prefect's test harness: thread, process and Dask task runners.

Each run's merged output must be byte-identical to one unsharded ``clean``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from corpus_helpers import synthetic_raw

from cgpt.data.clean.cleaner import clean
from cgpt.data.clean.params import CleanParams
from flows.data_shards import sharded_clean_flow

pytestmark = pytest.mark.slow  # the Prefect test server takes ~25 s to start; the module ~50 s
CLEAN = {"workers": 1, "part_docs": 10, "dedup": {"exact": True}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shards")
    raw = synthetic_raw(tmp / "raw", n_docs=80, seed=11)
    params_path = tmp / "params.yaml"
    params_path.write_text(yaml.safe_dump({"clean": CLEAN}), encoding="utf-8")
    clean(CleanParams.model_validate(CLEAN), raw, tmp / "single", progress=False)
    return tmp, raw, params_path


def _dir_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.mark.parametrize("runner", ["thread", "process", "dask"])
def test_sharded_clean_flow_equals_single_run(harness, corpus, runner):
    tmp, raw, params_path = corpus
    out = tmp / f"clean-{runner}"
    stats = sharded_clean_flow(
        params_path=str(params_path),
        n_shards=3,
        runner=runner,
        raw_dir=str(raw),
        out_dir=str(out),
        workers_per_shard=1,
    )
    assert _dir_bytes(out) == _dir_bytes(tmp / "single")
    assert stats["shards"] == 3 and stats["total"]["dropped"]["exact_dup"] >= 0
    assert not (tmp / f"clean-{runner}.shards").exists()  # shard folders removed after the merge


def test_finished_shards_are_skipped_on_relaunch(harness, corpus):
    tmp, raw, params_path = corpus
    from cgpt.data.shards import clean_shard, shard_params

    base = CleanParams.model_validate(CLEAN)
    out = tmp / "clean-resume"
    first = clean_shard(shard_params(base, 1, 2), raw, out)
    again = clean_shard(shard_params(base, 1, 2), raw, out)
    assert not first["skipped"] and again["skipped"]
    sharded_clean_flow(
        params_path=str(params_path),
        n_shards=2,
        runner="thread",
        raw_dir=str(raw),
        out_dir=str(out),
        workers_per_shard=1,
    )
    assert _dir_bytes(out) == _dir_bytes(tmp / "single")
