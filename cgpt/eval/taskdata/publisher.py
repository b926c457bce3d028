"""Task data from the publishers: each split's file as its publisher distributes it, pinned, converted to the HF schema.

The same file the Hugging Face dataset (and so lm-eval 0.4.13) was built from, pinned by sha256
and size. The pins are those published in the Hugging Face ``datasets`` loading scripts'
``dataset_infos.json`` (``download_checksums``, huggingface/datasets ``datasets/<name>/``) and,
for LAMBADA, the sha256 the old harness task and the EleutherAI/lambada_openai card publish.
Downloads go through :func:`cgpt.data.download.http.fetch_file` (resumable, retried, verified); a
mirror that serves other bytes is rejected. A host is probed once per process before its first
download, and one that failed is skipped for a while (:mod:`cgpt.eval.taskdata.reach`).
The conversion to the Hugging Face schema repeats what those loading scripts do, and was
checked offline: written back in the publisher's layout, shared/eval-data's files hash to the
pinned sha256s (tests/unit/eval/test_eval_download.py).

What is not pinned, and why: HellaSwag's files come from the ``master`` branch of
rowanz/hellaswag (the sha256 pins the content, so a changed branch fails loudly rather than
silently). ARC ships only as AI2's 681 MB zip (the ARC corpus is inside); only four small
members are read from it.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cgpt.core.errors import DataError
from cgpt.core.fsutil import sha256_file
from cgpt.data.download.http import RetriesExhausted, done_path, fetch_file
from cgpt.eval.taskdata.files import render_jsonl
from cgpt.eval.taskdata.reach import SourceMemory, SourcesUnreachable, Unreachable, host_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpstreamFile:
    """One file as its publisher distributes it; ``urls`` are tried in order, the content is pinned."""

    name: str
    urls: tuple[str, ...]
    sha256: str
    size: int
    pin_source: str


@dataclass(frozen=True)
class SplitSource:
    """Where one split comes from: a file (or a member of a zip) and its conversion to the HF schema."""

    file: UpstreamFile
    convert: Callable[[dict[str, bytes], str], list[dict[str, Any]] | bytes]
    members: tuple[str, ...] = ()  # zip members the conversion reads (none: the file itself)


# ----------------------------------------------------------------------------------- conversions


def _jsonl(data: bytes, where: str) -> list[dict[str, Any]]:
    out = []
    for i, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}:{i}: invalid JSON ({exc.msg})") from None
    return out


def _only(files: dict[str, bytes]) -> tuple[str, bytes]:
    ((name, data),) = files.items()
    return name, data


def convert_hellaswag(files: dict[str, bytes], where: str) -> list[dict[str, Any]]:
    """huggingface/datasets ``hellaswag.py``: label becomes a string, keys in the HF order."""
    _, data = _only(files)
    return [
        {
            "ind": int(d["ind"]),
            "activity_label": d["activity_label"],
            "ctx_a": d.get("ctx_a", ""),
            "ctx_b": d.get("ctx_b", ""),
            "ctx": d["ctx"],
            "endings": d.get("endings", []),
            "source_id": d["source_id"],
            "split": d["split"],
            "split_type": d["split_type"],
            "label": str(d.get("label", "")),
        }
        for d in _jsonl(data, where)
    ]


def convert_piqa(files: dict[str, bytes], where: str) -> list[dict[str, Any]]:
    """``piqa.py``: rows of ``<split>.jsonl`` with the int label of the same line of ``<split>-labels.lst``."""
    (rows_name, rows), (labels_name, labels) = sorted(files.items(), key=lambda kv: kv[0].endswith(".lst"))
    inputs = rows.decode("utf-8").splitlines()
    labs = labels.decode("utf-8").splitlines()
    if len(inputs) != len(labs):
        raise DataError(f"{where}: {rows_name} has {len(inputs)} rows but {labels_name} has {len(labs)} labels")
    out = []
    for i, (row, lab) in enumerate(zip(inputs, labs), start=1):
        d = json.loads(row)
        if lab not in ("0", "1"):
            raise DataError(f"{where}: {labels_name}:{i}: label {lab!r}, expected 0 or 1")
        out.append({"goal": d["goal"], "sol1": d["sol1"], "sol2": d["sol2"], "label": int(lab)})
    return out


def convert_winogrande(files: dict[str, bytes], where: str) -> list[dict[str, Any]]:
    """``winogrande.py``: drop ``qID``."""
    _, data = _only(files)
    return [
        {"sentence": d["sentence"], "option1": d["option1"], "option2": d["option2"], "answer": d["answer"]}
        for d in _jsonl(data, where)
    ]


def convert_arc(files: dict[str, bytes], where: str) -> list[dict[str, Any]]:
    """``ai2_arc.py``: the question's stem, choices as parallel text/label lists."""
    _, data = _only(files)
    return [
        {
            "id": d["id"],
            "question": d["question"]["stem"],
            "choices": {
                "text": [c["text"] for c in d["question"]["choices"]],
                "label": [c["label"] for c in d["question"]["choices"]],
            },
            "answerKey": d["answerKey"],
        }
        for d in _jsonl(data, where)
    ]


def convert_openbookqa(files: dict[str, bytes], where: str) -> list[dict[str, Any]]:
    """``openbookqa.py`` (main), with each choice's own label (an early version of the script copied the text)."""
    _, data = _only(files)
    return [
        {
            "id": d["id"],
            "question_stem": d["question"]["stem"],
            "choices": {
                "text": [c["text"] for c in d["question"]["choices"]],
                "label": [c["label"] for c in d["question"]["choices"]],
            },
            "answerKey": d["answerKey"],
        }
        for d in _jsonl(data, where)
    ]


def copy_bytes(files: dict[str, bytes], where: str) -> bytes:
    """LAMBADA: OpenAI's file is already ``{"text": ...}`` per line; keep it byte for byte."""
    _, data = _only(files)
    _jsonl(data, where)  # still refuse a corrupt file here rather than at scoring time
    return data


# --------------------------------------------------------------------------------------- the pins

_ARC_ZIP = UpstreamFile(
    "ARC-V1-Feb2018.zip",
    (
        "https://s3-us-west-2.amazonaws.com/ai2-website/data/ARC-V1-Feb2018.zip",
        "https://ai2-public-datasets.s3.amazonaws.com/arc/ARC-V1-Feb2018.zip",
    ),
    "6d2d5ab50b2ceec6ba5f79c921be77cf2de712ea25a2b3f4fff3acc101cecfa0",
    680_841_265,
    "huggingface/datasets datasets/ai2_arc/dataset_infos.json",
)
_OBQA_ZIP = UpstreamFile(
    "OpenBookQA-V1-Sep2018.zip",
    (
        "https://s3-us-west-2.amazonaws.com/ai2-website/data/OpenBookQA-V1-Sep2018.zip",
        "https://ai2-public-datasets.s3.amazonaws.com/open-book-qa/OpenBookQA-V1-Sep2018.zip",
    ),
    "82368cf05df2e3b309c17d162e10b888b4d768fad6e171e0a041954c8553be46",
    1_446_098,
    "huggingface/datasets datasets/openbookqa/dataset_infos.json",
)
_WINOGRANDE_ZIP = UpstreamFile(
    "winogrande_1.1.zip",
    ("https://storage.googleapis.com/ai2-mosaic/public/winogrande/winogrande_1.1.zip",),
    "3619ab104d8be2977b25c90ff420cb42d491707dcc75362a1e5d22bc082b7318",
    3_395_492,
    "huggingface/datasets datasets/winogrande/dataset_infos.json",
)
_PIQA_ZIP = UpstreamFile(
    "physicaliqa-train-dev.zip",
    ("https://storage.googleapis.com/ai2-mosaic/public/physicaliqa/physicaliqa-train-dev.zip",),
    "54d32a04f59a7e354396f321723c8d7ec35cc6b08506563d8d1ffcc15ce98ddd",
    1_824_009,
    "huggingface/datasets datasets/piqa/dataset_infos.json",
)


def _hellaswag_file(name: str, sha256: str, size: int) -> UpstreamFile:
    return UpstreamFile(
        name,
        (
            f"https://github.com/rowanz/hellaswag/raw/master/data/{name}",
            f"https://raw.githubusercontent.com/rowanz/hellaswag/master/data/{name}",
        ),
        sha256,
        size,
        "huggingface/datasets datasets/hellaswag/dataset_infos.json",
    )


SOURCES: dict[tuple[str, str], SplitSource] = {
    ("hellaswag", "validation"): SplitSource(
        _hellaswag_file(
            "hellaswag_val.jsonl", "0aa3b88843990f3f10a97b9575c94d7b71fb2205240ba04ae4884d9e9c992588", 12_246_618
        ),
        convert_hellaswag,
    ),
    ("hellaswag", "train"): SplitSource(
        _hellaswag_file(
            "hellaswag_train.jsonl", "dae5e69249868cb9fe4e23ff925c60b66169564cfb7072d793cd7356a2b69f8d", 47_496_131
        ),
        convert_hellaswag,
    ),
    ("piqa", "validation"): SplitSource(
        _PIQA_ZIP, convert_piqa, ("physicaliqa-train-dev/dev.jsonl", "physicaliqa-train-dev/dev-labels.lst")
    ),
    ("piqa", "train"): SplitSource(
        _PIQA_ZIP, convert_piqa, ("physicaliqa-train-dev/train.jsonl", "physicaliqa-train-dev/train-labels.lst")
    ),
    ("winogrande", "validation"): SplitSource(_WINOGRANDE_ZIP, convert_winogrande, ("winogrande_1.1/dev.jsonl",)),
    ("winogrande", "train"): SplitSource(_WINOGRANDE_ZIP, convert_winogrande, ("winogrande_1.1/train_xl.jsonl",)),
    ("lambada_openai", "test"): SplitSource(
        UpstreamFile(
            "lambada_test.jsonl",
            ("https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl",),
            "4aa8d02cd17c719165fc8a7887fddd641f43fcafa4b1c806ca8abc31fabdb226",
            1_819_752,
            "lm-evaluation-harness v0.3 lambada task; EleutherAI/lambada_openai dataset card",
        ),
        copy_bytes,
    ),
    ("arc_easy", "test"): SplitSource(_ARC_ZIP, convert_arc, ("ARC-V1-Feb2018-2/ARC-Easy/ARC-Easy-Test.jsonl",)),
    ("arc_easy", "train"): SplitSource(_ARC_ZIP, convert_arc, ("ARC-V1-Feb2018-2/ARC-Easy/ARC-Easy-Train.jsonl",)),
    ("arc_challenge", "test"): SplitSource(
        _ARC_ZIP, convert_arc, ("ARC-V1-Feb2018-2/ARC-Challenge/ARC-Challenge-Test.jsonl",)
    ),
    ("arc_challenge", "train"): SplitSource(
        _ARC_ZIP, convert_arc, ("ARC-V1-Feb2018-2/ARC-Challenge/ARC-Challenge-Train.jsonl",)
    ),
    ("openbookqa", "test"): SplitSource(_OBQA_ZIP, convert_openbookqa, ("OpenBookQA-V1-Sep2018/Data/Main/test.jsonl",)),
    ("openbookqa", "train"): SplitSource(
        _OBQA_ZIP, convert_openbookqa, ("OpenBookQA-V1-Sep2018/Data/Main/train.jsonl",)
    ),
}


# -------------------------------------------------------------------------------------- fetching


def download(
    file: UpstreamFile,
    downloads: Path,
    *,
    progress: bool,
    fetch_kwargs: dict[str, Any],
    memory: SourceMemory | None = None,
) -> Path:
    """``downloads/<file>``: a verified copy put there by hand, else fetched from the first mirror that serves it.

    A mirror whose host is known unreachable, or fails its first-contact probe, is skipped at once
    (``memory``, default: the one of the cache above ``downloads``; :mod:`cgpt.eval.taskdata.reach`).
    """
    dest = downloads / file.name
    if dest.is_file() and not done_path(dest).is_file() and sha256_file(dest) == file.sha256:
        return dest  # put there by hand (e.g. on a machine that reaches only PyPI): the pin vouches for it
    memory = memory if memory is not None else SourceMemory(downloads.parent)
    finished = dest.is_file() and done_path(dest).is_file()  # fetch_file reuses it without the network
    errors: list[str] = []
    unreachable: list[Unreachable] = []
    for url in file.urls:
        try:
            if not finished:
                memory.check(url, timeout_s=fetch_kwargs.get("timeout_s"))
            return fetch_file(url, dest, sha256=file.sha256, size=file.size, progress=progress, **fetch_kwargs).path
        except Unreachable as exc:
            unreachable.append(exc)
            log.info("%s: %s", file.name, exc)
        except RetriesExhausted as exc:  # the host answered the probe, then never gave the file
            memory.failed(host_of(url), str(exc).split("; the partial file")[0], persist=exc.downloaded_bytes == 0)
            errors.append(str(exc))
            log.warning("%s", exc)
        except DataError as exc:
            errors.append(str(exc))
            log.warning("%s", exc)
    hint = f"put a copy (sha256 {file.sha256}) into {downloads}, or pass --data with a local folder"
    if errors:
        raise DataError(f"{file.name}: no mirror served the pinned file ({errors[-1]}); {hint}")
    raise SourcesUnreachable(file.name, unreachable, hint)


def read_members(path: Path, members: tuple[str, ...]) -> dict[str, bytes]:
    """The named members of a zip (none named: the file itself), read into memory by name."""
    if not members:
        return {path.name: path.read_bytes()}
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [m for m in members if m not in names]
            if missing:
                raise DataError(f"{path}: zip has no {', '.join(missing)}")
            return {m: zf.read(m) for m in members}
    except zipfile.BadZipFile as exc:
        raise DataError(f"{path}: not a readable zip ({exc}); delete it to download again") from None


def provenance(src: SplitSource) -> dict[str, Any]:
    """The cache's ``.source.json`` record of a split made from its publisher's file."""
    return {"file": src.file.name, "sha256": src.file.sha256, "members": list(src.members)}


def fetch_split(
    src: SplitSource,
    downloads: Path,
    *,
    progress: bool,
    fetch_kwargs: dict[str, Any],
    memory: SourceMemory | None = None,
) -> bytes:
    """The split's ``<task>/<split>.jsonl`` bytes: its pinned file downloaded into ``downloads``, read, converted."""
    path = download(src.file, downloads, progress=progress, fetch_kwargs=fetch_kwargs, memory=memory)
    converted = src.convert(read_members(path, src.members), f"{path}{':' + src.members[0] if src.members else ''}")
    return converted if isinstance(converted, bytes) else render_jsonl(converted).encode("utf-8")
