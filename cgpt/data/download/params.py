"""The ``download:`` section of params.yaml: which corpora the download stage puts in ``data/raw/``.

An empty section means the built-in corpus (Shakespeare's complete works)::

    download:
      sources:
        - name: shakespeare          # unique; names data/raw/<name>/ and the per-source stats
          kind: shakespeare          # shakespeare (built-in) | local | url
        - name: mycorpus
          kind: local
          paths: ["corpus/*.jsonl.zst"]   # files, folders and globs, relative to the project root
          format: auto               # auto (by suffix) | txt | jsonl | jsonl.zst | jsonl.gz | parquet
          pile_set_name: null        # tag for records without meta.pile_set_name (default: name)
          split: null                # null (tokenize splits) | train | val | test (kept as-is)
        - name: pile-val
          kind: url
          urls: ["https://host/pile/val.jsonl.zst"]     # or base_url: ... + files: [...]
          sha256: {"val.jsonl.zst": "<64 hex>"}          # optional, per file name
          size: {"val.jsonl.zst": 470907480}             # optional, per file name
          split: val
      retries: 5                     # consecutive failed attempts per file before giving up
      timeout_s: 60                  # per connect / per read
      backoff_s: 1.0                 # first retry delay; doubles each retry (capped at 60 s)
      cache_dir: null                # partial + finished downloads; null = data/.download-cache
      parallel: 1                    # files of a url source downloaded at the same time

Everything that can be checked before the stage runs is checked here, including that every local
path or glob matches at least one file. Relative paths (``paths``, ``cache_dir``) are resolved
against the params file's folder, the project root, wherever the command runs from.
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from cgpt.data.formats import FORMATS, SUFFIXES, format_for_name

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
SourceKind = Literal["shakespeare", "local", "url"]
FormatName = Literal["auto", "txt", "json", "jsonl", "jsonl.zst", "jsonl.gz", "parquet"]
Split = Literal["train", "val", "test"]

#: ``pile_set_name`` of the built-in corpus when the source does not set one.
SHAKESPEARE_TAG = "Shakespeare"


def expand_local(pattern: str, base: Path | None = None) -> list[Path]:
    """The files a ``paths`` entry names: a file, a folder (its supported files, recursively) or a
    glob (``**`` recurses). ``~`` and environment variables are expanded; sorted, no duplicates."""
    pat = os.path.expandvars(os.path.expanduser(pattern))
    base = Path.cwd() if base is None else Path(base)
    full = pat if os.path.isabs(pat) else str(base / pat)
    hits = [Path(p) for p in glob.glob(full, recursive=True)] if glob.has_magic(pat) else [Path(full)]
    files: list[Path] = []
    for h in hits:
        if h.is_dir():
            files.extend(
                p for p in h.rglob("*") if p.is_file() and format_for_name(p.name) and not p.name.startswith(".")
            )
        elif h.is_file():
            files.append(h)
    return sorted(set(files))


def _safe_relpath(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts) and "\\" not in rel


class SourceParams(BaseModel):
    """One corpus: the built-in Shakespeare, local files, or files at URLs."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: SourceKind
    paths: list[str] | None = None
    urls: list[str] | None = None
    base_url: str | None = None
    files: list[str] | None = None
    format: FormatName = "auto"
    pile_set_name: str | None = None
    split: Split | None = None
    sha256: dict[str, str] = Field(default_factory=dict)
    size: dict[str, int] = Field(default_factory=dict)
    _root: Path = PrivateAttr(default_factory=Path.cwd)  # where relative paths start (the params file's folder)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v) or v.startswith("."):
            raise ValueError("expected letters, digits, '_', '.', '-' (it names the folder data/raw/<name>/)")
        return v

    @field_validator("pile_set_name")
    @classmethod
    def _tag(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("expected a non-empty tag (or null for the source's name)")
        return v

    @model_validator(mode="after")
    def _by_kind(self, info: ValidationInfo) -> SourceParams:
        given = {k for k in ("paths", "urls", "base_url", "files") if getattr(self, k) is not None}
        if self.sha256 or self.size:
            given |= {k for k in ("sha256", "size") if getattr(self, k)}
        allowed = {"shakespeare": set(), "local": {"paths"}, "url": {"urls", "base_url", "files", "sha256", "size"}}[
            self.kind
        ]
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(
                f"kind = {self.kind!r}: {', '.join(extra)} not allowed (only for kind: "
                f"{'local' if extra[0] == 'paths' else 'url'})"
            )
        if self.kind == "shakespeare" and self.format not in ("auto", "jsonl"):
            raise ValueError(f"format = {self.format!r}: the built-in corpus is written as jsonl; remove format")
        self._root = Path((info.context or {}).get("root") or Path.cwd())
        if self.kind == "local":
            self._check_local(self._root)
        if self.kind == "url":
            self._check_urls()
        return self

    def _check_local(self, root: Path) -> None:
        """``root``: where relative paths start (the params file's folder, via the validation context)."""
        if not self.paths:
            raise ValueError("paths = []: a local source needs paths: [files, folders or globs]")
        for pat in self.paths:
            matched = expand_local(pat, root)
            if not matched:
                raise ValueError(f"paths = {pat!r}: matches no file (relative to {root}); check the path or glob")
            if self.format == "auto":
                unknown = [p for p in matched if format_for_name(p.name) is None]
                if unknown:
                    raise ValueError(
                        f"paths = {pat!r}: {unknown[0].name}: unknown format (suffixes: {', '.join(SUFFIXES)}); "
                        f"set format: to one of {', '.join(FORMATS)}"
                    )

    def _check_urls(self) -> None:
        if self.urls is not None and (self.base_url is not None or self.files is not None):
            raise ValueError("urls = ...: give either urls: [...] or base_url: + files: [...], not both")
        if self.urls is None and (self.base_url is None or not self.files):
            raise ValueError("kind = 'url': needs urls: [...] or base_url: + files: [...]")
        if self.urls is not None and not self.urls:
            raise ValueError("urls = []: needs at least one URL")
        for u in ([self.base_url] if self.base_url is not None else []) + list(self.urls or []):
            parts = urlsplit(u)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"urls = {u!r}: expected an http:// or https:// URL")
        for f in self.files or []:
            if not _safe_relpath(f):
                raise ValueError(
                    f"files = {f!r}: expected a relative path like 'train/00.jsonl.zst' (no '..', no leading '/')"
                )
        names = [rel for _, rel in self.remote_files()]
        seen: set[str] = set()
        for rel in names:
            if not _safe_relpath(rel):
                raise ValueError(f"urls = {rel!r}: the URL path has no usable file name; use base_url + files")
            if rel in seen:
                raise ValueError(f"urls = {rel!r}: two URLs give the same file name; use base_url + files with folders")
            seen.add(rel)
            if self.format == "auto" and format_for_name(rel) is None:
                raise ValueError(
                    f"urls = {rel!r}: unknown format (suffixes: {', '.join(SUFFIXES)}); "
                    f"set format: to one of {', '.join(FORMATS)}"
                )
        for key, digest in self.sha256.items():
            if key not in seen:
                raise ValueError(f"sha256 = {key!r}: no such file in this source (files: {', '.join(names)})")
            if not _HEX64.fullmatch(digest):
                raise ValueError(f"sha256 = {digest!r}: expected 64 hex digits")
        for key, n in self.size.items():
            if key not in seen:
                raise ValueError(f"size = {key!r}: no such file in this source (files: {', '.join(names)})")
            if n < 0:
                raise ValueError(f"size = {n}: expected a byte count >= 0")

    # ---- resolved views -------------------------------------------------------------------

    @property
    def tag(self) -> str:
        """The pile_set_name given to records that have none."""
        if self.pile_set_name:
            return self.pile_set_name
        return SHAKESPEARE_TAG if self.kind == "shakespeare" else self.name

    def remote_files(self) -> list[tuple[str, str]]:
        """(url, relative file name) for a url source; the name is where it lands under data/raw/<name>/."""
        if self.kind != "url":
            return []
        if self.urls is not None:
            return [(u, unquote(posixpath.basename(urlsplit(u).path))) for u in self.urls]
        base = self.base_url or ""
        base = base if base.endswith("/") else base + "/"
        return [(base + f, f) for f in self.files or []]

    def local_files(self) -> list[Path]:
        """The files of a local source, in order of ``paths`` (each entry's matches sorted), no duplicates."""
        out: list[Path] = []
        seen: set[Path] = set()
        for pat in self.paths or []:
            for p in expand_local(pat, self._root):
                rp = p.resolve()
                if rp not in seen:
                    seen.add(rp)
                    out.append(p)
        return out


def _default_sources() -> list[SourceParams]:
    return [SourceParams(name="shakespeare", kind="shakespeare")]


class DownloadParams(BaseModel):
    """The ``download:`` section (see the module docstring for the schema and an example)."""

    model_config = ConfigDict(extra="forbid")

    sources: list[SourceParams] = Field(default_factory=_default_sources)
    retries: int = Field(default=5, ge=0)
    timeout_s: float = Field(default=60.0, gt=0)
    backoff_s: float = Field(default=1.0, ge=0)
    cache_dir: str | None = None
    parallel: int = Field(default=1, ge=1, le=64)

    @field_validator("cache_dir")
    @classmethod
    def _resolve_cache_dir(cls, v: str | None, info: ValidationInfo) -> str | None:
        """A relative cache folder means relative to the params file's folder (the project root)."""
        if v is None:
            return v
        path = Path(os.path.expanduser(os.path.expandvars(v)))
        root = (info.context or {}).get("root")
        return str(path if path.is_absolute() or root is None else Path(root) / path)

    @model_validator(mode="after")
    def _unique_names(self) -> DownloadParams:
        if not self.sources:
            raise ValueError("sources = []: needs at least one source (omit sources for the built-in Shakespeare)")
        seen: dict[str, int] = {}
        for i, s in enumerate(self.sources):
            if s.name in seen:
                raise ValueError(
                    f"sources[{i}].name = {s.name!r}: duplicate source name (also sources[{seen[s.name]}]); names "
                    "must be unique"
                )
            seen[s.name] = i
        return self
