"""Streaming readers (and a writer) for the raw corpus formats: txt, jsonl, jsonl.zst, jsonl.gz, parquet.

Every reader yields ``{"text": str, "meta": dict}`` records one at a time; no file is held in
memory whole (except a ``.txt`` file, which *is* one document). The Pile's own format is
``jsonl.zst``: one JSON object per line, ``{"text": ..., "meta": {"pile_set_name": ...}}``.

Rules shared by all formats:

- ``meta`` is the record's ``meta`` object, plus the record's other top-level keys (``id``,
  ``url``, ...) that ``meta`` does not already have, plus ``default_meta`` for missing keys (the
  clean stage passes ``{"pile_set_name": <source tag>}``).
- Invalid UTF-8 bytes (and lone surrogates from ``\\ud800``-style JSON escapes) become U+FFFD;
  each affected record counts once in ``counters["invalid_utf8_records"]``.
- A malformed line (not JSON, or not a JSON object) raises ``DataError("<file>:<line>: ...")``
  unless ``on_bad_line="skip"``, which counts it in ``counters["malformed_json_skipped"]``. The same
  holds for a record without a string ``text`` (``missing_text_skipped``) or with a ``meta`` that
  is not an object (``bad_meta_skipped``). Blank lines are ignored.
- A record whose text is at least :data:`LONG_UNBROKEN_CHARS` characters long without a single
  line break (a file or line that lost its line ends, several documents run together) is kept
  as one document and counted: ``counters["long_unbroken_records"]`` and, of the largest,
  ``counters["long_unbroken_max_bytes"]`` (the clean stage warns about them, naming the file).
- A truncated or corrupt compressed file raises :class:`CorruptFile` (a ``DataError``) naming the
  file; its remedy depends on where the file came from (the clean stage says which).
- A file with no records yields nothing (an empty ``.txt`` file included); deciding that an
  empty corpus is an error is the clean stage's job.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import zstandard

from cgpt.core.errors import DataError

#: Supported formats, and the file suffixes that select them when ``fmt`` is ``None``/``"auto"``.
FORMATS: tuple[str, ...] = ("txt", "json", "jsonl", "jsonl.zst", "jsonl.gz", "parquet")
SUFFIXES: dict[str, str] = {
    ".jsonl.zst": "jsonl.zst",
    ".jsonl.zstd": "jsonl.zst",
    ".json.zst": "jsonl.zst",
    ".jsonl.gz": "jsonl.gz",
    ".json.gz": "jsonl.gz",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".txt": "txt",
    ".parquet": "parquet",
}
ZSTD_MAX_WINDOW = 2**31  # the Pile was compressed with long windows (--long=31)
_CHUNK = 1 << 20

BadLine = Literal["error", "skip"]

#: a record this long (characters) without a line break is counted (``long_unbroken_records``)
LONG_UNBROKEN_CHARS = 1_000_000

DOWNLOAD_AGAIN = "delete it and rerun the download stage"


class CorruptFile(DataError):
    """A truncated or corrupt file: ``detail`` says what was found, the message adds a remedy
    (by default :data:`DOWNLOAD_AGAIN`, which a reader that knows the file's origin replaces)."""

    def __init__(self, path: Path, detail: str, remedy: str = DOWNLOAD_AGAIN) -> None:
        super().__init__(f"{detail}; {remedy}")
        self.path, self.detail = path, detail

    def with_remedy(self, remedy: str) -> CorruptFile:
        return CorruptFile(self.path, self.detail, remedy)


def json_kind(value: Any) -> str:
    """What a JSON value is, in words ("a number", "null"), for one-line messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    return f"a {type(value).__name__}"


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` from its suffix (``x.jsonl.zst`` -> ``"jsonl.zst"``); DataError if unknown."""
    fmt = format_for_name(str(path))
    if fmt is None:
        raise DataError(
            f"{path}: unknown file format (supported suffixes: {', '.join(SUFFIXES)}); "
            f"set the source's format: to one of {', '.join(FORMATS)}"
        )
    return fmt


def format_for_name(name: str) -> str | None:
    """The format for a file name or URL path by suffix, or ``None`` when no suffix matches."""
    low = name.lower().split("?", 1)[0]
    for suffix, fmt in SUFFIXES.items():  # longest suffixes first (dict order above)
        if low.endswith(suffix):
            return fmt
    return None


# ----------------------------------------------------------------------------------------------
# reading


def iter_records(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    on_bad_line: BadLine = "error",
    default_meta: dict[str, Any] | None = None,
    counters: dict[str, int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield ``{"text": str, "meta": dict}`` records from ``path``, streaming.

    ``fmt`` is one of :data:`FORMATS`; ``None`` or ``"auto"`` detects it from the suffix.
    ``counters`` (if given) is updated in place with ``invalid_utf8_records``,
    ``malformed_json_skipped``, ``missing_text_skipped``, ``bad_meta_skipped`` (only keys that occur).
    """
    path = Path(path)
    if fmt in (None, "auto"):
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if on_bad_line not in ("error", "skip"):
        raise ValueError(f"on_bad_line must be 'error' or 'skip', got {on_bad_line!r}")
    if not path.is_file():
        raise DataError(f"{path}: no such file; rerun the download stage")
    ctx = _Ctx(path, on_bad_line, default_meta or {}, counters if counters is not None else {})
    if fmt == "txt":
        return _iter_txt(ctx)
    if fmt == "parquet":
        return _iter_parquet(ctx)
    if fmt == "json":
        return _iter_json(ctx)
    return _iter_jsonl(ctx, fmt)


class _Ctx:
    __slots__ = ("path", "on_bad_line", "default_meta", "counters")

    def __init__(self, path: Path, on_bad_line: str, default_meta: dict, counters: dict) -> None:
        self.path, self.on_bad_line, self.default_meta, self.counters = path, on_bad_line, default_meta, counters

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def bad(self, where: str, problem: str, counter: str) -> None:
        """Raise for a bad record, or count it when skipping."""
        if self.on_bad_line == "skip":
            self.count(counter)
            return
        raise DataError(f"{where}: {problem}; set clean.on_bad_line: skip to skip such lines")

    def record(self, obj: Any, where: str, *, utf8_replaced: bool = False) -> dict[str, Any] | None:
        """Normalize one decoded object to ``{"text", "meta"}``; None when it is bad and skipped."""
        if not isinstance(obj, dict):
            self.bad(where, f"malformed JSON (expected an object, got {json_kind(obj)})", "malformed_json_skipped")
            return None
        text = obj.get("text")
        if not isinstance(text, str):
            problem = (
                "the record has no 'text' key"
                if "text" not in obj
                else f"the record's 'text' is {json_kind(text)}, not a string"
            )
            self.bad(where, problem, "missing_text_skipped")
            return None
        meta = obj.get("meta")
        if meta is None:
            meta = {}
        elif isinstance(meta, str):  # some dumps store meta as a JSON string
            try:
                meta = json.loads(meta)
            except ValueError:
                meta = {"meta": meta}
            if not isinstance(meta, dict):
                meta = {"meta": meta}
        elif not isinstance(meta, dict):
            self.bad(where, f"the record's 'meta' is {json_kind(meta)}, not an object", "bad_meta_skipped")
            return None
        else:
            meta = dict(meta)
        for k, v in obj.items():
            if k != "text" and k != "meta" and k not in meta:
                meta[k] = v
        for k, v in self.default_meta.items():
            meta.setdefault(k, v)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates from JSON escapes
                text = _fix_surrogates(text)
                utf8_replaced = True
        if utf8_replaced:
            self.count("invalid_utf8_records")
        if len(text) >= LONG_UNBROKEN_CHARS and "\n" not in text and "\r" not in text:
            self.count("long_unbroken_records")
            size = len(text.encode("utf-8"))
            self.counters["long_unbroken_max_bytes"] = max(self.counters.get("long_unbroken_max_bytes", 0), size)
        return {"text": text, "meta": meta}


def _fix_surrogates(s: str) -> str:
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s)


def _decode(raw: bytes) -> tuple[str, bool]:
    """UTF-8 decode; on invalid bytes decode with replacement and report it."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), True


def _iter_txt(ctx: _Ctx) -> Iterator[dict[str, Any]]:
    raw = ctx.path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw:
        return
    nul = raw.find(b"\x00")
    if nul >= 0:  # text never holds NUL bytes; archives, images and compressed files almost always do
        raise DataError(
            f"{ctx.path}: binary content (a NUL byte at offset {nul}), not a text file; "
            "set the source's format: if it is jsonl.zst, jsonl.gz or parquet, or remove it"
        )
    text, replaced = _decode(raw)
    rec = ctx.record({"text": text}, str(ctx.path), utf8_replaced=replaced)
    if rec is not None:
        yield rec


def _iter_jsonl(ctx: _Ctx, fmt: str) -> Iterator[dict[str, Any]]:
    with _open_binary(ctx.path, fmt) as fh:
        lineno = 0
        try:
            for raw in fh:
                lineno += 1
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                if not raw.strip():
                    continue
                where = f"{ctx.path}:{lineno}"
                line, replaced = _decode(raw)
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    ctx.bad(where, f"malformed JSON ({_json_problem(exc)})", "malformed_json_skipped")
                    continue
                rec = ctx.record(obj, where, utf8_replaced=replaced)
                if rec is not None:
                    yield rec
        except (EOFError, OSError, zlib.error, zstandard.ZstdError) as exc:
            detail = f"{ctx.path}: truncated or corrupt {fmt} file after line {lineno} ({exc})"
            raise CorruptFile(ctx.path, detail) from None


def _json_problem(exc: ValueError) -> str:
    msg = getattr(exc, "msg", None)
    col = getattr(exc, "colno", None)
    if not (msg and col):
        return str(exc)
    # json's own messages can end in "at" ("Unterminated string starting at"): don't say "at at"
    return f"{msg} column {col}" if msg.endswith(" at") else f"{msg} at column {col}"


def _iter_json(ctx: _Ctx) -> Iterator[dict[str, Any]]:
    """A ``.json`` file: a JSON array of records (read whole), or JSON Lines under another suffix."""
    with open(ctx.path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):
        yield from _iter_jsonl(ctx, "jsonl")
        return
    text, replaced = _decode(ctx.path.read_bytes())
    try:
        records = json.loads(text.lstrip("\ufeff"))
    except ValueError as exc:
        raise DataError(
            f"{ctx.path}: malformed JSON ({_json_problem(exc)}); expected an array of records "
            "or one JSON object per line"
        ) from None
    for i, obj in enumerate(records):
        rec = ctx.record(obj, f"{ctx.path}: record {i}", utf8_replaced=replaced)
        if rec is not None:
            yield rec


def _iter_parquet(ctx: _Ctx) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise DataError(f"{ctx.path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        pf = pq.ParquetFile(ctx.path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for corrupt files
        raise CorruptFile(ctx.path, f"{ctx.path}: not a readable parquet file ({exc})") from None
    if "text" not in pf.schema_arrow.names:
        raise DataError(f"{ctx.path}: parquet file has no 'text' column (columns: {', '.join(pf.schema_arrow.names)})")
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=1024):
            for obj in batch.to_pylist():
                row += 1
                replaced = False
                text = obj.get("text")
                if isinstance(text, (bytes, bytearray)):  # a binary column: decode as UTF-8
                    obj["text"], replaced = _decode(bytes(text))
                rec = ctx.record(obj, f"{ctx.path}: row {row}", utf8_replaced=replaced)
                if rec is not None:
                    yield rec
    except DataError:
        raise
    except Exception as exc:
        raise CorruptFile(ctx.path, f"{ctx.path}: corrupt parquet file after row {row} ({exc})") from None


# ----------------------------------------------------------------------------------------------
# decompression


def _open_binary(path: Path, fmt: str) -> IO[bytes]:
    if fmt == "jsonl":
        return open(path, "rb", buffering=_CHUNK)
    if fmt == "jsonl.gz":
        return io.BufferedReader(gzip.open(path, "rb"), buffer_size=_CHUNK)  # type: ignore[arg-type]
    if fmt == "jsonl.zst":
        return io.BufferedReader(ZstdReader(open(path, "rb")), buffer_size=_CHUNK)
    raise ValueError(fmt)


class ZstdReader(io.RawIOBase):
    """A raw, streaming zstd decompressor over a binary file: multi-frame, long windows, and a
    truncated last frame is an error (``zstandard``'s own stream_reader silently stops there)."""

    def __init__(self, fh: IO[bytes], max_window_size: int = ZSTD_MAX_WINDOW) -> None:
        super().__init__()
        self._fh = fh
        self._dctx = zstandard.ZstdDecompressor(max_window_size=max_window_size)
        self._dobj = self._dctx.decompressobj()
        self._in_frame = False  # input consumed for a frame that has not ended yet
        self._buf = b""
        self._pos = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        if self._pos >= len(self._buf):
            self._buf, self._pos = b"", 0
        while not self._buf and not self._eof:
            data = self._fh.read(_CHUNK)
            if not data:
                self._eof = True
                if self._in_frame:
                    raise zstandard.ZstdError("unexpected end of file inside a zstd frame")
                return
            parts = []
            while data:
                parts.append(self._dobj.decompress(data))
                self._in_frame = True
                if self._dobj.eof:
                    data = self._dobj.unused_data
                    self._dobj = self._dctx.decompressobj()
                    self._in_frame = False
                else:
                    data = b""
            self._buf = b"".join(parts)

    def readinto(self, b) -> int:  # type: ignore[override]
        self._fill()
        if not self._buf:
            return 0
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = memoryview(self._buf)[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            super().close()


# ----------------------------------------------------------------------------------------------
# writing


class JsonlWriter:
    """Write records as jsonl or jsonl.zst (by suffix) atomically: ``<path>.tmp`` renamed on close.

    ``with open_jsonl_writer(p) as w: w.write({"text": ..., "meta": {...}})``; an exception inside
    the ``with`` removes the temporary file and leaves ``path`` untouched.
    """

    def __init__(self, path: str | os.PathLike[str], *, level: int = 10) -> None:
        self.path = Path(path)
        fmt = format_for_name(self.path.name)
        if fmt not in ("jsonl", "jsonl.zst"):
            raise ValueError(f"{self.path}: the writer supports .jsonl and .jsonl.zst, not {fmt or self.path.suffix!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._raw = open(self._tmp, "wb")
        self._zw = (
            zstandard.ZstdCompressor(level=level).stream_writer(self._raw, closefd=False)
            if fmt == "jsonl.zst"
            else None
        )
        self._out: IO[bytes] = self._zw if self._zw is not None else self._raw  # type: ignore[assignment]
        self.records = 0
        self.bytes_in = 0

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        self._out.write(line)
        self.records += 1
        self.bytes_in += len(line)

    def close(self) -> None:
        if self._zw is not None:
            self._zw.close()
        self._raw.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        try:
            if self._zw is not None:
                self._zw.close()
            self._raw.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def open_jsonl_writer(path: str | os.PathLike[str], *, level: int = 10) -> JsonlWriter:
    """A :class:`JsonlWriter` for ``path`` (``.jsonl`` or ``.jsonl.zst``)."""
    return JsonlWriter(path, level=level)
