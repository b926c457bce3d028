"""The clean stage: ftfy NFC, filters, dedup, stats, determinism across workers and shards."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
import zstandard
from corpus_helpers import random_text, synthetic_raw, write_raw
from pydantic import ValidationError

from cgpt.core.errors import DataError
from cgpt.data.clean.cleaner import clean, rate
from cgpt.data.clean.merge import merge_clean_shards
from cgpt.data.clean.params import CleanParams
from cgpt.data.clean.parts import iter_clean_documents, read_clean_manifest
from cgpt.data.tokenize.params import TokenizeParams


def dir_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def read_docs(clean_dir: Path) -> list[dict]:
    m = read_clean_manifest(clean_dir)
    return [doc for part in m["files"] for doc in iter_clean_documents(clean_dir, part)]


# ---------------------------------------------------------------------------------------------- params


def test_params_defaults_are_the_recipe():
    p = CleanParams()
    assert p.fix_text and p.normalization == "NFC" and p.min_chars == 1 and p.max_chars is None
    assert not p.dedup.exact and not p.dedup.near and p.workers == 0
    assert (p.shard.index, p.shard.count) == (0, 1)
    t = TokenizeParams()
    assert t.tokenizer.kind == "train" and t.shard_tokens == 100_000_000


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"shard": {"index": 2, "count": 2}}, "shard.index=2 must be < shard.count=2"),
        ({"max_chars": 5, "min_chars": 10}, "max_chars=5 must be >= min_chars=10"),
        ({"normalization": "NFX"}, "normalization"),
        ({"bogus": 1}, "bogus"),
        ({"dedup": {"near_threshold": 1.5}}, "near_threshold"),
    ],
)
def test_clean_params_reject(bad, needle):
    with pytest.raises(ValidationError, match=needle.replace(".", r"\.").replace("=", "=")):
        CleanParams(**bad)


def test_tokenize_params_reject():
    with pytest.raises(ValidationError, match="needs tokenizer.path"):
        TokenizeParams(tokenizer={"kind": "pretrained"})
    with pytest.raises(ValidationError, match="must be < 1"):
        TokenizeParams(split={"val": 0.6, "test": 0.5})


# ---------------------------------------------------------------------------------------------- cleaning


def test_ftfy_nfc_filters_and_stats(tmp_path):
    raw = write_raw(
        tmp_path / "raw",
        [
            (
                "a.jsonl",
                None,
                "Books",
                [
                    {"text": "caf\u00c3\u00a9 au lait", "meta": {}},  # mojibake -> café
                    {"text": "cafe\u0301 noir", "meta": {"pile_set_name": "Web"}},  # NFC composes é
                    {"text": "   \n ", "meta": {}},  # empty after strip
                    {"text": "", "meta": {}},  # empty
                    {"text": "tiny", "meta": {}},  # too short (min 5)
                    {"text": "x" * 50, "meta": {"pile_set_name": "Web"}},  # too long (max 40)
                    {"text": "plain ascii text", "meta": {}},
                ],
            ),
        ],
    )
    stats = clean(CleanParams(min_chars=5, max_chars=40, workers=1), raw, tmp_path / "clean", progress=False)
    docs = read_docs(tmp_path / "clean")
    assert [d["text"] for d in docs] == ["café au lait", "caf\u00e9 noir", "plain ascii text"]
    assert [d["meta"]["pile_set_name"] for d in docs] == ["Books", "Web", "Books"]  # manifest's name fills in
    tot = stats["total"]
    assert tot["documents_in"] == 7 and tot["documents_out"] == 3
    assert tot["changed_by_ftfy"] == 2
    assert tot["dropped"] == {"empty": 2, "too_short": 1, "too_long": 1, "exact_dup": 0, "near_dup": 0, "bad_line": 0}
    assert stats["per_source"]["Web"]["dropped"]["too_long"] == 1
    assert stats["per_source"]["Web"]["documents_out"] == 1
    assert stats["per_source"]["Books"]["documents_in"] == 5
    assert tot["characters_out"] == sum(len(d["text"]) for d in docs)
    assert stats["timing"]["docs_per_s"] > 0 and stats["timing"]["mb_per_s"] > 0
    json.dumps(stats)  # serializable


def test_fix_text_off_still_normalizes(tmp_path):
    raw = write_raw(tmp_path / "raw", [("a.jsonl", None, "S", [{"text": "cafe\u0301 caf\u00c3\u00a9", "meta": {}}])])
    clean(CleanParams(fix_text=False, workers=1), raw, tmp_path / "c", progress=False)
    assert read_docs(tmp_path / "c")[0]["text"] == "caf\u00e9 caf\u00c3\u00a9"


def test_official_split_and_manifest(tmp_path):
    raw = synthetic_raw(tmp_path / "raw", n_docs=40)
    clean(CleanParams(workers=1, part_docs=15), raw, tmp_path / "c", progress=False)
    m = read_clean_manifest(tmp_path / "c")
    assert {(f["raw_path"], f["split"]) for f in m["files"]} == {
        ("train0.jsonl.zst", None),
        ("train1.jsonl", None),
        ("val.jsonl.zst", "val"),
    }
    assert [f["path"] for f in m["files"]] == [f"part-{i:05d}.jsonl.zst" for i in range(len(m["files"]))]
    assert m["stats"]["total"]["documents_out"] == sum(f["documents"] for f in m["files"])
    for f in m["files"]:
        assert len(list(iter_clean_documents(tmp_path / "c", f))) == f["documents"] <= 15


def test_exact_and_near_dedup(tmp_path):
    rng = random.Random(3)
    base = random_text(rng, 300)
    near = base.replace(base.split()[150], "zebra", 1)  # one word changed out of 300
    other = random_text(rng, 300)
    raw = write_raw(
        tmp_path / "raw",
        [
            (
                "a.jsonl",
                None,
                "S",
                [
                    {"text": base, "meta": {}},
                    {"text": other, "meta": {}},
                    {"text": base, "meta": {}},
                    {"text": near, "meta": {}},
                ],
            )
        ],
    )
    st = clean(CleanParams(workers=1), raw, tmp_path / "none", progress=False)
    assert st["total"]["documents_out"] == 4
    st = clean(CleanParams(workers=1, dedup={"exact": True}), raw, tmp_path / "exact", progress=False)
    assert st["total"]["dropped"]["exact_dup"] == 1 and st["total"]["documents_out"] == 3
    st = clean(CleanParams(workers=1, dedup={"exact": True, "near": True}), raw, tmp_path / "near", progress=False)
    assert st["total"]["dropped"]["exact_dup"] == 1 and st["total"]["dropped"]["near_dup"] == 1
    assert [d["text"] for d in read_docs(tmp_path / "near")] == [base, other]


def test_workers_do_not_change_bytes(tmp_path):
    raw = synthetic_raw(tmp_path / "raw", n_docs=300)
    p1 = CleanParams(workers=1, part_docs=50, dedup={"exact": True})
    clean(p1, raw, tmp_path / "w1", progress=False)
    clean(p1.model_copy(update={"workers": 2}), raw, tmp_path / "w2", progress=False)
    assert dir_bytes(tmp_path / "w1") == dir_bytes(tmp_path / "w2")


@pytest.mark.parametrize("by", ["block", "file"])
@pytest.mark.parametrize("dedup", [{}, {"exact": True, "near": True}])
def test_shards_merged_equal_single_run(tmp_path, by, dedup):
    raw = synthetic_raw(tmp_path / "raw", n_docs=90)
    # duplicates across blocks and files so that cross-shard dedup matters
    m = json.loads((raw / "manifest.json").read_text())
    extra = [
        {"text": json.loads(line)["text"], "meta": {}} for line in (raw / "train1.jsonl").read_text().splitlines()[:10]
    ]
    (raw / "dups.jsonl").write_text("\n".join(json.dumps(r) for r in extra) + "\n")
    m["files"].append(
        {
            "path": "dups.jsonl",
            "source": "Dups",
            "pile_set_name": "Dups",
            "split": None,
            "format": "jsonl",
            "bytes": 0,
            "sha256": "0" * 64,
        }
    )
    (raw / "manifest.json").write_text(json.dumps(m))

    base = CleanParams(workers=1, part_docs=20, dedup=dedup)
    single = clean(base, raw, tmp_path / "single", progress=False)
    shard_dirs = []
    for i in range(3):
        p = CleanParams.model_validate({**base.model_dump(), "shard": {"index": i, "count": 3, "by": by}})
        clean(p, raw, tmp_path / f"shard{i}", progress=False)
        shard_dirs.append(tmp_path / f"shard{i}")
    merged = merge_clean_shards(shard_dirs, tmp_path / "merged", progress=False)
    assert dir_bytes(tmp_path / "single") == dir_bytes(tmp_path / "merged")
    assert merged["total"] == single["total"]
    if dedup:
        assert single["total"]["dropped"]["exact_dup"] >= 10


def test_merge_needs_every_shard(tmp_path):
    raw = synthetic_raw(tmp_path / "raw", n_docs=20)
    clean(CleanParams(workers=1, shard={"index": 0, "count": 2}), raw, tmp_path / "s0", progress=False)
    with pytest.raises(DataError, match="pass every shard"):
        merge_clean_shards([tmp_path / "s0"], tmp_path / "merged", progress=False)
    assert not (tmp_path / "merged").exists()


def test_empty_corpus_is_an_error_and_nothing_promoted(tmp_path):
    raw = write_raw(tmp_path / "raw", [("a.jsonl", None, "S", [{"text": "", "meta": {}}, {"text": " ", "meta": {}}])])
    out = tmp_path / "data" / "clean"
    with pytest.raises(DataError) as exc:
        clean(CleanParams(workers=1), raw, out, progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and "kept 0 of 2" in msg and "empty=2" in msg
    assert not out.exists()
    assert list((tmp_path / "data").iterdir()) == []  # no temp dir left behind


def test_failed_run_keeps_previous_output(tmp_path):
    raw = synthetic_raw(tmp_path / "raw", n_docs=10)
    out = tmp_path / "clean"
    clean(CleanParams(workers=1), raw, out, progress=False)
    before = dir_bytes(out)
    with pytest.raises(DataError):
        clean(CleanParams(workers=1, min_chars=10**9), raw, out, progress=False)
    assert dir_bytes(out) == before


def test_missing_manifest_and_file(tmp_path):
    with pytest.raises(DataError, match="raw manifest not found"):
        clean(CleanParams(workers=1), tmp_path, tmp_path / "c", progress=False)
    raw = synthetic_raw(tmp_path / "raw", n_docs=5)
    (raw / "train1.jsonl").unlink()
    with pytest.raises(DataError, match="train1.jsonl: listed in"):
        clean(CleanParams(workers=1), raw, tmp_path / "c", progress=False)


def test_bad_lines_error_or_skip(tmp_path):
    raw = write_raw(
        tmp_path / "raw",
        [("a.jsonl", None, "S", [{"text": "good one", "meta": {}}, "{not json", {"text": "good two", "meta": {}}])],
    )
    with pytest.raises(Exception, match="a.jsonl"):
        clean(CleanParams(workers=1), raw, tmp_path / "c", progress=False)
    st = clean(CleanParams(workers=1, on_bad_line="skip"), raw, tmp_path / "c", progress=False)
    assert st["total"]["documents_out"] == 2
    assert st["total"]["dropped"]["bad_line"] == 1


def test_output_is_zstd_jsonl(tmp_path):
    raw = synthetic_raw(tmp_path / "raw", n_docs=10)
    clean(CleanParams(workers=1), raw, tmp_path / "c", progress=False)
    part = tmp_path / "c" / "part-00000.jsonl.zst"
    with zstandard.ZstdDecompressor().stream_reader(part.open("rb")) as r:
        lines = io.TextIOWrapper(r, encoding="utf-8").read().splitlines()
    assert all(set(json.loads(x)) == {"text", "meta"} for x in lines)


def test_bad_lines_and_invalid_utf8_counted_once_across_shards(tmp_path):
    raw = write_raw(
        tmp_path / "raw", [("a.jsonl", None, "S", [{"text": f"doc {i} text", "meta": {}} for i in range(30)])]
    )
    lines = (raw / "a.jsonl").read_bytes().splitlines()
    lines.insert(5, b"{broken")
    lines.insert(20, b'{"text": "bad \xff byte", "meta": {}}')
    (raw / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    base = CleanParams(workers=1, part_docs=7, on_bad_line="skip")
    single = clean(base, raw, tmp_path / "single", progress=False)
    assert single["total"]["dropped"]["bad_line"] == 1 and single["total"]["invalid_utf8"] == 1
    assert single["total"]["documents_out"] == 31
    dirs = []
    for i in range(2):
        p = CleanParams.model_validate({**base.model_dump(), "shard": {"index": i, "count": 2}})
        clean(p, raw, tmp_path / f"s{i}", progress=False)
        dirs.append(tmp_path / f"s{i}")
    merged = merge_clean_shards(dirs, tmp_path / "merged", progress=False)
    assert merged["total"] == single["total"]
    assert dir_bytes(tmp_path / "merged") == dir_bytes(tmp_path / "single")


# ---------------------------------------------------------------------------------------------- bad input: what you get


def _download_local(tmp_path: Path, name: str, data: bytes) -> tuple[Path, Path]:
    """``data`` as a local corpus file, through the real download stage into data/raw: (raw dir, the file)."""
    from cgpt.data.download.params import DownloadParams
    from cgpt.data.download.raw import download

    src = tmp_path / "corpus" / name
    src.parent.mkdir(parents=True)
    src.write_bytes(data)
    params = DownloadParams.model_validate({"sources": [{"name": "mine", "kind": "local", "paths": [str(src)]}]})
    download(params, tmp_path / "data" / "raw", progress=False)
    return tmp_path / "data" / "raw", src


def test_a_corrupt_local_file_is_named_as_the_source_itself(tmp_path):
    whole = zstandard.ZstdCompressor().compress(b"".join(b'{"text": "doc %d"}\n' % i for i in range(2000)))
    raw, src = _download_local(tmp_path, "part.jsonl.zst", whole[: len(whole) // 2])  # truncated
    with pytest.raises(DataError) as info:
        clean(CleanParams(workers=1), raw, tmp_path / "data" / "clean", progress=False)
    message = str(info.value)
    assert "\n" not in message and "truncated or corrupt jsonl.zst file" in message
    assert f"it is a copy of the local file {src}, which is itself corrupt" in message
    assert "rerun the download stage" not in message  # which would copy the same damage again


def test_non_utf8_bytes_and_a_huge_unbroken_line_are_one_warning_line_each(tmp_path, capsys):
    huge = b"word " * 260_000  # 1.3 MB without a line break
    raw = write_raw(tmp_path / "raw", [("a.jsonl", None, "S", [{"text": "fine"}])])
    (raw / "a.jsonl").write_bytes(b'{"text": "caf\xe9"}\n{"text": "ok \xff\xfe"}\n{"text": "fine"}\n')
    (raw / "b.txt").write_bytes(huge)
    manifest = json.loads((raw / "manifest.json").read_text())
    manifest["files"].append({**manifest["files"][0], "path": "b.txt", "format": "txt"})
    (raw / "manifest.json").write_text(json.dumps(manifest))
    stats = clean(CleanParams(workers=1), raw, tmp_path / "clean", progress=False)
    assert stats["total"]["invalid_utf8"] == 2 and stats["total"]["documents_out"] == 4
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: {raw / 'a.jsonl'}: 2 record(s) held bytes that are not UTF-8; each was replaced by U+FFFD "
        "(re-encode the file as UTF-8 to keep those characters)",
        f"warning: {raw / 'b.txt'}: 1 document(s) of 1,000,000+ characters without a line break (the largest "
        "1.3 MB), each kept as one document; if that is several documents run together, give them line ends "
        "(a .txt file is one document; .jsonl holds one JSON record per line)",
    ]


def test_a_positive_rate_is_never_rounded_to_zero():
    # a few hundred bytes cleaned in half a second on a loaded machine: 0.0004 MB/s, not 0.0
    assert rate(0.000437, 3) == 0.000437
    assert rate(12.3456, 3) == 12.346 and rate(7.0, 1) == 7.0
    assert rate(0.0, 3) == 0.0
