"""cgpt.data.formats: every format read as a stream, bad input reported or counted."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from cgpt.core.errors import DataError
from cgpt.data.formats import FORMATS, detect_format, iter_records, open_jsonl_writer

RECS = [
    {"text": "first document", "meta": {"pile_set_name": "Pile-CC"}},
    {"text": "second \u00e9t\u00e9 \u2014 unicode", "meta": {}},
    {"text": "third", "id": 7},
]


def jsonl_bytes(recs: list) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in recs).encode()


def write(path: Path, recs: list) -> Path:
    data = jsonl_bytes(recs)
    if path.name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    elif path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.zst", "a.jsonl.gz"])
def test_jsonl_family(tmp_path, name):
    path = write(tmp_path / name, RECS)
    it = iter_records(path, default_meta={"pile_set_name": "Mine"})
    assert not isinstance(it, list)  # a generator: streaming
    got = list(it)
    assert [r["text"] for r in got] == [r["text"] for r in RECS]
    assert got[0]["meta"] == {"pile_set_name": "Pile-CC"}  # the record's own tag wins
    assert got[1]["meta"] == {"pile_set_name": "Mine"}
    assert got[2]["meta"] == {"id": 7, "pile_set_name": "Mine"}  # other top-level keys go into meta


def test_format_detection_and_override(tmp_path):
    assert detect_format("x/00.jsonl.zst") == "jsonl.zst"
    assert detect_format("VAL.JSONL.GZ") == "jsonl.gz"
    assert detect_format("a.parquet") == "parquet" and detect_format("b.txt") == "txt"
    with pytest.raises(DataError, match="unknown file format"):
        detect_format("x.csv")
    path = write(tmp_path / "data.ndjson", RECS)
    assert len(list(iter_records(path, "jsonl"))) == 3
    assert set(FORMATS) == {"txt", "json", "jsonl", "jsonl.zst", "jsonl.gz", "parquet"}


def test_zst_multi_frame_long_window_and_streaming(tmp_path):
    recs = [{"text": f"doc {i} " + "x" * (i % 50)} for i in range(20_000)]
    data = jsonl_bytes(recs)
    half = len(data) // 2
    # two frames; the first declares a 256 MiB window (like the Pile's --long=31 files), which
    # zstandard's default decoder refuses ("Frame requires too much memory")
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=28, enable_ldm=True, write_content_size=False)
    bio = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(bio, closefd=False) as w:
        w.write(data[:half])
    assert zstandard.get_frame_parameters(bio.getvalue()).window_size == 2**28
    c = bio.getvalue() + zstandard.ZstdCompressor().compress(data[half:])
    path = tmp_path / "big.jsonl.zst"
    path.write_bytes(c)
    it = iter_records(path)
    assert next(it)["text"] == "doc 0 "
    assert sum(1 for _ in it) == len(recs) - 1


def test_truncated_zst_is_a_clear_error(tmp_path):
    data = zstandard.ZstdCompressor().compress(jsonl_bytes([{"text": "y" * 200 + str(i)} for i in range(5000)]))
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as ei:
        list(iter_records(path))
    msg = str(ei.value)
    assert str(path) in msg and "truncated or corrupt" in msg and "\n" not in msg


def test_truncated_gz_is_a_clear_error(tmp_path):
    data = gzip.compress(jsonl_bytes([{"text": "z" * 100 + str(i)} for i in range(3000)]))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        list(iter_records(path))


def test_malformed_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", [RECS[0], "{not json", RECS[1]])
    with pytest.raises(DataError) as ei:
        list(iter_records(path))
    msg = str(ei.value)
    assert msg.startswith(f"{path}:2: malformed JSON") and "clean.on_bad_line: skip" in msg
    counters: dict = {}
    got = list(iter_records(path, on_bad_line="skip", counters=counters))
    assert [r["text"] for r in got] == [RECS[0]["text"], RECS[1]["text"]]
    assert counters == {"malformed_json_skipped": 1}


def test_malformed_line_in_zst_names_line(tmp_path):
    path = write(tmp_path / "bad.jsonl.zst", [RECS[0], RECS[1], "[1, 2]"])
    with pytest.raises(DataError, match=r"bad\.jsonl\.zst:3: malformed JSON \(expected an object"):
        list(iter_records(path))


def test_record_without_text(tmp_path):
    path = write(tmp_path / "notext.jsonl", [{"meta": {}}, {"text": 5}, RECS[0], {"text": None}])
    with pytest.raises(DataError, match=r"notext\.jsonl:1: the record has no 'text' key; set"):
        list(iter_records(path))
    counters: dict = {}
    assert len(list(iter_records(path, on_bad_line="skip", counters=counters))) == 1
    assert counters == {"missing_text_skipped": 3}


def test_bad_meta(tmp_path):
    path = write(tmp_path / "meta.jsonl", [{"text": "a", "meta": [1]}, {"text": "b", "meta": '{"k": 1}'}])
    with pytest.raises(DataError, match=r"meta\.jsonl:1: the record's 'meta' is a list, not an object; set"):
        list(iter_records(path))
    counters: dict = {}
    got = list(iter_records(path, on_bad_line="skip", counters=counters))
    assert got == [{"text": "b", "meta": {"k": 1}}] and counters == {"bad_meta_skipped": 1}


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    good = json.dumps({"text": "fine"}).encode()
    bad = b'{"text": "caf\xe9 \xff"}'
    surrogate = b'{"text": "lone \\ud800 surrogate"}'
    path = tmp_path / "u.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join([good, bad, surrogate]) + b"\n"))
    counters: dict = {}
    got = list(iter_records(path, counters=counters))
    assert got[1]["text"] == "caf\ufffd \ufffd"
    assert got[2]["text"] == "lone \ufffd surrogate"
    assert all(r["text"].encode("utf-8") for r in got)
    assert counters == {"invalid_utf8_records": 2}


def test_txt_is_one_document(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes("\ufeffLine one.\nLine two \u2014 end.\n".encode() + b"\xfe")
    counters: dict = {}
    got = list(iter_records(path, default_meta={"pile_set_name": "Books"}, counters=counters))
    assert got == [{"text": "Line one.\nLine two \u2014 end.\n\ufffd", "meta": {"pile_set_name": "Books"}}]
    assert counters == {"invalid_utf8_records": 1}


def test_parquet_streams_batches(tmp_path):
    n = 2500  # more than one record batch
    table = pa.table(
        {
            "text": [f"row {i}" for i in range(n)],
            "meta": [{"pile_set_name": "Wiki"} if i % 2 else None for i in range(n)],
            "url": [f"u{i}" for i in range(n)],
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=1000)
    got = list(iter_records(path, default_meta={"pile_set_name": "Default"}))
    assert len(got) == n
    assert got[0] == {"text": "row 0", "meta": {"url": "u0", "pile_set_name": "Default"}}
    assert got[1]["meta"]["pile_set_name"] == "Wiki"


def test_parquet_without_text_column_and_null_text(tmp_path):
    path = tmp_path / "no.parquet"
    pq.write_table(pa.table({"body": ["a"]}), path)
    with pytest.raises(DataError, match="no 'text' column"):
        list(iter_records(path))
    path2 = tmp_path / "null.parquet"
    pq.write_table(pa.table({"text": ["a", None]}), path2)
    with pytest.raises(DataError, match=r"null\.parquet: row 2: the record's 'text' is null, not a string"):
        list(iter_records(path2))
    counters: dict = {}
    assert len(list(iter_records(path2, on_bad_line="skip", counters=counters))) == 1
    assert counters == {"missing_text_skipped": 1}


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.jsonl.zst", "empty.jsonl.gz", "empty.txt"])
def test_empty_file_yields_nothing(tmp_path, name):
    path = write(tmp_path / name, []) if not name.endswith(".txt") else tmp_path / name
    if name.endswith(".txt"):
        path.write_bytes(b"")
    if name == "empty.jsonl.zst":
        path.write_bytes(b"")  # a zero-byte .zst is also empty, not truncated
    assert list(iter_records(path)) == []


def test_blank_lines_are_ignored(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b'\n{"text": "a"}\n\n  \n{"text": "b"}')  # no final newline either
    assert [r["text"] for r in iter_records(path)] == ["a", "b"]


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        list(iter_records(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.zst"])
def test_writer_round_trip_and_atomic(tmp_path, name):
    path = tmp_path / name
    with open_jsonl_writer(path) as w:
        for r in RECS:
            w.write(r)
    assert [r["text"] for r in iter_records(path)] == [r["text"] for r in RECS]
    with pytest.raises(RuntimeError), open_jsonl_writer(path) as w:
        w.write({"text": "replacement"})
        raise RuntimeError("killed")
    assert len(list(iter_records(path))) == 3  # the old file is intact, no temp file left
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_json_file_as_array_or_lines(tmp_path):
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"text": "one"}, {"text": "two", "meta": {"pile_set_name": "X"}}]))
    assert [r["text"] for r in iter_records(arr)] == ["one", "two"]
    lines = tmp_path / "b.json"
    lines.write_text('{"text": "x"}\n{"text": "y"}\n')
    assert [r["text"] for r in iter_records(lines)] == ["x", "y"]
    assert detect_format("c.json") == "json" and detect_format("c.ndjson") == "jsonl"


def test_unterminated_string_says_at_once(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no end')
    with pytest.raises(DataError) as exc:
        list(iter_records(bad))
    assert "at at " not in str(exc.value) and "(Unterminated string starting at column 10)" in str(exc.value)


def test_binary_file_as_txt_is_an_error(tmp_path):
    blob = tmp_path / "blob.txt"
    blob.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)))
    with pytest.raises(DataError, match=r"blob.txt: binary content \(a NUL byte at offset"):
        list(iter_records(blob))


@pytest.mark.parametrize(
    "record, problem",
    [
        ({"text": 5}, "the record's 'text' is a number (5), not a string"),
        ({"text": ["a"]}, "the record's 'text' is a list, not a string"),
        ({"text": None}, "the record's 'text' is null, not a string"),
        ({"body": "x"}, "the record has no 'text' key"),
        ({"text": "x", "meta": True}, "the record's 'meta' is a boolean (true), not an object"),
    ],
)
def test_a_bad_record_is_one_grammatical_line_naming_file_and_line(tmp_path, record, problem):
    path = write(tmp_path / "r.jsonl", [RECS[0], record])
    with pytest.raises(DataError) as info:
        list(iter_records(path))
    assert str(info.value) == f"{path}:2: {problem}; set clean.on_bad_line: skip to skip such lines"


def test_a_huge_record_without_a_line_break_is_counted(tmp_path):
    path = write(tmp_path / "long.jsonl", [{"text": "x" * 1_000_000}, {"text": "y\n" * 600_000}, {"text": "z"}])
    counters: dict = {}
    assert len(list(iter_records(path, counters=counters))) == 3
    assert counters == {"long_unbroken_records": 1, "long_unbroken_max_bytes": 1_000_000}
