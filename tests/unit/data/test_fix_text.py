"""The ftfy fast path of clean_text: the same strings as plain ftfy, and ftfy really skipped.

The reference is clean_text as it was before the fast path (lone surrogates -> U+FFFD, then
``ftfy.fix_text(text, normalization=...)`` or only ``unicodedata.normalize``). Equal ``str`` results
are equal UTF-8 bytes (neither side has surrogates left), which is what the clean stage writes.
"""

from __future__ import annotations

import importlib.util
import random
import unicodedata
from collections.abc import Iterable
from types import SimpleNamespace

import ftfy
import ftfy.chardata
import pytest
from paths import REPO

from cgpt.data.clean import fix_text as fix_text_module
from cgpt.data.clean.fix_text import (
    VERIFIED_FTFY_VERSIONS,
    clean_text,
    fix_text_by_lines,
    ftfy_fast_path_enabled,
    is_ftfy_fixed_point,
)
from cgpt.data.clean.params import CleanParams

FORMS = ["NFC", "NFKC", "NFD", "NFKD", None]
ALL_PARAMS = [CleanParams(normalization=f) for f in FORMS] + [
    CleanParams(fix_text=False, normalization=f) for f in FORMS
]


def reference(text: str, params: CleanParams) -> str:
    """clean_text before the fast path: the definition the fast path must reproduce."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if params.fix_text:
        return ftfy.fix_text(text, normalization=params.normalization)
    if params.normalization:
        return unicodedata.normalize(params.normalization, text)
    return text


def assert_same(docs: Iterable[str], params: CleanParams) -> int:
    """clean_text == reference on every document (the first differences in the message); returns the count."""
    n = 0
    bad = []
    for doc in docs:
        n += 1
        got, want = clean_text(doc, params), reference(doc, params)
        if got.encode("utf-8") != want.encode("utf-8"):
            bad.append((doc, got, want))
    assert not bad, f"{len(bad)} of {n} differ ({params}); first: " + "; ".join(
        f"in={d!r} got={g!r} want={w!r}" for d, g, w in bad[:3]
    )
    return n


# ---------------------------------------------------------------------------------------------- the proof's premises


def test_ftfy_version_is_verified():
    assert ftfy.__version__ in VERIFIED_FTFY_VERSIONS, (
        f"ftfy {ftfy.__version__}: re-read its fix_text/fix_and_explain/fixers against the module docstring of "
        "cgpt/data/clean/fix_text.py, then add the version to VERIFIED_FTFY_VERSIONS (until then clean is slow)"
    )
    assert ftfy_fast_path_enabled()


def test_conditions_match_ftfys_tables():
    """The characters and pattern the fast path excludes are exactly the ASCII part of ftfy's own tables."""
    assert fix_text_module._HTML_ENTITY_RE.pattern == ftfy.chardata.HTML_ENTITY_RE.pattern
    ftfy_ascii = {c for c in ftfy.chardata.CONTROL_CHARS if c < 0x80} | {ord("\r")}  # + fix_line_breaks
    assert set(fix_text_module._FTFY_ASCII_CHANGES) == ftfy_ascii
    assert ftfy.chardata.possible_encoding("".join(map(chr, range(128))) * 3, "ascii")


@pytest.mark.parametrize("form", FORMS)
def test_every_ascii_character(form):
    """A single ASCII character is a fixed point by our check exactly when ftfy leaves it unchanged."""
    for c in map(chr, range(128)):
        assert is_ftfy_fixed_point(c) == (ftfy.fix_text(c, normalization=form) == c), repr(c)
        if form:
            assert unicodedata.normalize(form, c) == c


def test_every_ascii_pair():
    pairs = [a + b for a in map(chr, range(128)) for b in map(chr, range(128))]
    assert_same(pairs, CleanParams())
    assert all(unicodedata.is_normalized(f, "".join(pairs)) for f in ("NFC", "NFKC", "NFD", "NFKD"))


# ---------------------------------------------------------------------------------------------- byte-identical outputs


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("clean_throughput", REPO / "benchmarks" / "clean_throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_corpus_identical():
    docs = _load_benchmark().mixed_corpus(1.5)
    fixed = sum(map(is_ftfy_fixed_point, docs))
    assert 0.8 * len(docs) < fixed < len(docs)  # both paths are exercised
    assert sum(not d.isascii() for d in docs) > 20 and any("&amp;" in d for d in docs)
    assert_same(docs, CleanParams())
    assert [clean_text(d, CleanParams()) for d in docs] == [ftfy.fix_text(d, normalization="NFC") for d in docs]


def _mojibake(rng: random.Random, text: str) -> str:
    raw = text.encode("utf-8")
    if rng.random() < 0.5:
        return raw.decode("latin-1")
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in raw)


_WORDS = [
    "caf\u00e9", "na\u00efve", "Stra\u00dfe", "se\u00f1or", "\u00c5ngstr\u00f6m", "\u0416\u0438\u0437\u043d\u044c",
    "\u03a9\u03bc\u03ad\u03b3\u03b1", "\u4e2d\u6587", "\u00bfQu\u00e9?", "\u2019", "\u201c", "\u2014", "\u2026",
    "\u20ac", "\u00a0", "\U0001f600", "\u00e9t\u00e9",
]  # fmt: skip
_PIECES = [
    "&", "<", ">", "\r", "\r\n", "\n", "\n\n", "\t", "\x0c", "\x1b", "\x1b[31m", "\x1b[0m", "\x7f",
    *map(chr, range(32)),
    "&amp;", "&lt;", "&gt;", "&eacute;", "&EACUTE;", "&#233;", "&#x2019;", "&#8217;", "&nosuch;", "&amp", "& amp;",
    "&#99999999;", "&lt;b&gt;", "&quot;", "&nbsp;", "&a;", "&" + "x" * 24 + ";", "&" + "x" * 25 + ";",
    "\u2018", "\u2019", "\u201c", "\u201d", "\u02bc", "\ufb01", "\ufb02", "\u0132", "\u01c5", "\uff21", "\uff42",
    "\uff11", "\u3000", "\uff76", "\u2028", "\u2029", "\x85", "\x80", "\x9d", "\u00c3", "\u00c3\u00a9", "\u00e2\u20ac",
    "\ud800", "\udc00", "\ud83d\ude00", "\ud83d", "e\u0301", "\u212b", "\u1100\u1161", "\ufeff", "\u200b", "\u2060",
    "\ufffd", "\u00e9", "\u00f1", "\u00df", "\u0416", "\u4e2d",
]  # fmt: skip
_PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]


def fuzz_docs(seed: int, n: int) -> Iterable[str]:
    """Deterministic documents mixing printable ASCII with everything some ftfy step reacts to."""
    rng = random.Random(seed)
    for _ in range(n):
        parts: list[str] = []
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            if r < 0.45:  # printable ASCII (often words, sometimes any printable character)
                if rng.random() < 0.5:
                    parts.append("".join(rng.choices(_PRINTABLE, k=rng.randint(1, 30))))
                else:
                    parts.append(" ".join(rng.choices(["the", "a", "word", "Q&A", "x<y", "ok."], k=rng.randint(1, 8))))
            elif r < 0.6:
                parts.append("\n")
            elif r < 0.85:
                parts.append(rng.choice(_PIECES))
            elif r < 0.93:
                parts.append(rng.choice(_WORDS))
            else:
                parts.append(_mojibake(rng, rng.choice(_WORDS) + rng.choice(["", " ", "s", "\u2019s"])))
        yield "".join(parts)


def test_fuzzed_identical_nfc():
    assert assert_same(fuzz_docs(seed=20240601, n=4000), CleanParams()) == 4000


@pytest.mark.parametrize("params", [p for p in ALL_PARAMS if p != CleanParams()], ids=str)
def test_fuzzed_identical_every_setting(params):
    assert_same(fuzz_docs(seed=7, n=800), params)


def test_lines_per_ftfy_segment_and_long_lines():
    """ftfy's state across lines (unescape_html off after a "<") and its 10^6-character pieces."""
    docs = [
        "&amp; one\nplain <b>\n&amp; two\ncaf\u00c3\u00a9 &amp;\n",  # "<" on a skipped line turns entities off
        "caf\u00c3\u00a9 <i>\nplain\n&lt;x&gt; \u00e9\n",  # ... and on a line ftfy sees
        "plain\r\nline\r\n\u00e9\r",
        "\n\n\n\u00e9\n\n",
        "x" * (10**6 - 2) + "&amp; \u00e9\n&amp;\n",  # an entity cut by ftfy's piece boundary stays as is
        "y" * (10**6 + 5) + "\n" + "z" * (2 * 10**6) + "&amp;",  # long lines, one a fixed point
        "<" + "w" * (10**6 + 5) + "\n&amp;\n",
    ]
    assert_same(docs, CleanParams())
    assert_same(docs[:4], CleanParams(normalization="NFKC"))


# ---------------------------------------------------------------------------------------------- ftfy really skipped


def _forbid_ftfy(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> str:
        raise AssertionError(f"ftfy.fix_text called on {args!r}")

    monkeypatch.setattr(ftfy, "fix_text", boom)


def test_plain_ascii_never_reaches_ftfy(monkeypatch):
    doc = "Plain prose, AT&T & Q&A, x < y > z, tabs\tand a form feed\x0c.\n\n" + "More words here. " * 500
    ascii_controls = "keep \x1b[31m\x00\x7f\r\n as is"  # not a fixed point of ftfy, but of normalization
    _forbid_ftfy(monkeypatch)
    no_normalize = SimpleNamespace(normalize=lambda *a: pytest.fail(f"unicodedata.normalize called on {a!r}"))
    monkeypatch.setattr(fix_text_module, "unicodedata", no_normalize)
    for params in ALL_PARAMS:
        assert clean_text(doc, params) is doc
        assert clean_text("", params) == ""
        if not params.fix_text:
            assert clean_text(ascii_controls, params) is ascii_controls


def test_only_lines_that_need_it_reach_ftfy(monkeypatch):
    doc = "plain\ncaf\u00c3\u00a9\n\u00e9 too\nplain <b>\nplain\n&amp; x\nlast plain"
    want = reference(doc, CleanParams())
    calls: list[tuple[str, dict]] = []
    real = ftfy.fix_text

    def spy(text: str, *args: object, **kwargs: object) -> str:
        calls.append((text, kwargs))
        return real(text, *args, **kwargs)

    monkeypatch.setattr(ftfy, "fix_text", spy)
    assert (
        clean_text(doc, CleanParams()) == want == "plain\ncaf\u00e9\n\u00e9 too\nplain <b>\nplain\n&amp; x\nlast plain"
    )
    assert calls == [
        ("caf\u00c3\u00a9\n\u00e9 too\n", {"normalization": "NFC"}),  # one call for a run of lines
        ("&amp; x\n", {"normalization": "NFC", "unescape_html": False}),  # after the "<", as ftfy would
    ]
    assert fix_text_by_lines("no newline \u00e9", None) == "no newline \u00e9"


def test_unverified_ftfy_falls_back_to_plain_ftfy(monkeypatch):
    calls: list[str] = []
    real = ftfy.fix_text
    monkeypatch.setattr(ftfy, "fix_text", lambda text, **kw: calls.append(text) or real(text, **kw))
    monkeypatch.setattr(ftfy, "__version__", "0.0.1")
    ftfy_fast_path_enabled.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="not among the versions"):
            assert clean_text("plain", CleanParams()) == "plain"
        assert clean_text("plain\n\u00e9", CleanParams()) == "plain\n\u00e9"
        assert calls == ["plain", "plain\n\u00e9"]
    finally:
        ftfy_fast_path_enabled.cache_clear()
