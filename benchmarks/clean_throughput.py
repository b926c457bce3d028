"""Clean throughput: the ftfy fast path vs plain ftfy, and the clean stage at 1 and N workers.

1. Fast path. On a generated mixed corpus (``mixed_corpus``: ~90 % plain ASCII prose documents, the
   rest non-ASCII text, mojibake, HTML entities, CRLF line ends and control characters), times plain
   per-document ``ftfy.fix_text(doc, normalization="NFC")`` (the baseline) against
   :func:`cgpt.data.clean.fix_text.clean_text` in this process on the same documents, prints MB/s
   (UTF-8 bytes) of both and ``ratio = fast / baseline`` (target >= 5), and checks the outputs are
   identical (exit status 1 otherwise). Both are timed document by document, interleaved, so that
   load from other processes on a shared machine hits them alike.
2. Stage. Prints MB/s and docs/s of the clean stage for each worker count and
   ``ratio = N workers / 1 worker`` (ideal = N on an idle machine), plus the raw read rate
   (zstd + JSON only) that bounds a shard's skip cost.

``--mb`` is the size of each corpus (default 20: about 20 s on one free core).

    python benchmarks/clean_throughput.py --mb 20 --workers 2
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import ftfy
import zstandard

from cgpt.data.clean.cleaner import clean
from cgpt.data.clean.fix_text import clean_text, is_ftfy_fixed_point
from cgpt.data.clean.params import CleanParams

# ---------------------------------------------------------------------------------------------- mixed corpus

# Plain-ASCII words and snippets (ftfy keeps "&" without an entity, "<", ">", tabs); snippets that ftfy
# changes or has to inspect: non-ASCII text, HTML entities, control characters; documents in other scripts.
_COMMON = [
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
    "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were", "her",
    "she", "there", "one", "all", "we", "their", "can", "has", "been", "if", "more", "when", "will", "would",
    "who", "so", "no", "time", "people", "year", "said", "made", "new", "about", "after", "first", "two",
    "other", "into", "could", "also", "only", "over", "most", "some", "such", "these", "many", "then", "them",
]  # fmt: skip
_ASCII_EXTRAS = [
    "Q&A", "AT&T", "R&D", "x < y", "a > b", "(see p. 12)", "e-mail", "100%", "$5", "#1", "@home", "C++", "[1]",
    "3.14", "1,000", "--", "'quoted'", '"said"', "foo_bar", "a/b", "C:\\dir", "{x}", "1/2", "a\tb",
]  # fmt: skip
_NON_ASCII = [
    "caf\u00e9", "na\u00efve", "Stra\u00dfe", "Z\u00fcrich", "se\u00f1or", "\u201cquoted\u201d", "it\u2019s",
    "\u2014", "\u2026", "\u00a92020", "\u20ac5", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\u041c\u043e\u0441\u043a\u0432\u0430", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac", "\U0001f600",
    "\ufb01nance", "\uff21\uff22\uff23", "cafe\u0301", "line\u2028break", "\u00bd", "\u00a0", "\u2122", "\u00b0C",
]  # fmt: skip
_ENTITIES = [
    "&amp;", "&eacute;", "&#8217;", "&lt;b&gt;bold&lt;/b&gt;", "&quot;", "&nbsp;", "&hellip;", "&#x2014;", "&AMP;",
    "&EACUTE;", "&copy;",
]  # fmt: skip
_CONTROLS = ["\x1b[31mred\x1b[0m", "\x00", "\x7f", "\x0b", "\x1f", "\x08", "\ufeff", "\x85"]
_SCRIPTS = [
    "\u0430\u0431\u0432\u0433\u0434\u0435\u0436\u0437\u0438\u043a\u043b\u043c\u043d\u043e\u043f",  # Cyrillic
    "\u03b1\u03b2\u03b3\u03b4\u03b5\u03b6\u03b7\u03b8\u03b9\u03ba\u03bb\u03bc",  # Greek
    "\u4e00\u4e8c\u4e09\u4eba\u5927\u5c0f\u4e2d\u6587\u5b57\u56fd\u5bb6\u5929",  # CJK
    "a\u00e1\u00e0\u00e2\u00e4e\u00e9\u00e8\u00eai\u00edo\u00f3\u00f6u\u00fa\u00fc\u00e7n\u00f1s",  # accented Latin
]


def mojibake(text: str, rng: random.Random) -> str:
    """``text`` as UTF-8 bytes read back as windows-1252 (latin-1 where 1252 has no character)."""
    raw = text.encode("utf-8")
    if rng.random() < 0.7:
        return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in raw)
    return raw.decode("latin-1")


def _paragraphs(rng: random.Random, vocab: list[str], n_chars: int) -> list[str]:
    """English-looking ASCII prose paragraphs, ~``n_chars`` in all."""
    paras: list[str] = []
    total = 0
    while total < n_chars:
        sentences = []
        for _ in range(rng.randint(1, 8)):
            words = rng.choices(vocab, k=rng.randint(4, 28))
            if rng.random() < 0.08:
                words.insert(rng.randrange(len(words)), rng.choice(_ASCII_EXTRAS))
            s = " ".join(words)
            sentences.append(s[:1].upper() + s[1:] + rng.choice(".....?!"))
        paras.append(" ".join(sentences))
        total += len(paras[-1]) + 2
    return paras


def _wrap(para: str, width: int) -> str:
    """Hard-wrap a paragraph at ``width`` characters, as in a plain-text book or a LaTeX source."""
    lines: list[str] = []
    cur: list[str] = []
    n = 0
    for w in para.split(" "):
        if cur and n + len(w) > width:
            lines.append(" ".join(cur))
            cur, n = [], 0
        cur.append(w)
        n += len(w) + 1
    lines.append(" ".join(cur))
    return "\n".join(lines)


def _doc(rng: random.Random, vocab: list[str]) -> str:
    """One document: 90 % plain ASCII; 8.5 % ASCII with a few snippets of non-ASCII text, HTML entities,
    mojibake or control characters (1 in 10 of them with CRLF line ends); 1.5 % in another script.
    3 in 10 documents are hard-wrapped like a book, the others have one line per paragraph like web text."""
    n_chars = min(max(int(rng.lognormvariate(7.5, 0.9)), 80), 60_000)
    kind = rng.random()
    if kind >= 0.985:
        alphabet = rng.choice(_SCRIPTS)
        lines = [
            " ".join("".join(rng.choices(alphabet, k=rng.randint(1, 9))) for _ in range(rng.randint(5, 15)))
            for _ in range(max(1, n_chars // 100))
        ]
        text = "\n".join(lines)
        return mojibake(text, rng) if rng.random() < 0.2 else text
    paras = _paragraphs(rng, vocab, n_chars)
    if kind < 0.90:  # plain ASCII (some with "&", "<", tabs or form feeds, which ftfy keeps)
        if rng.random() < 0.02:
            paras.insert(rng.randrange(len(paras) + 1), "\tindented\x0c")
    else:
        snippets = [_NON_ASCII, _NON_ASCII, _ENTITIES, [mojibake(t, rng) for t in _NON_ASCII], _CONTROLS]
        pool = rng.choice(snippets)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(paras))
            words = paras[i].split(" ")
            words.insert(rng.randrange(len(words) + 1), rng.choice(pool))
            paras[i] = " ".join(words)
    if rng.random() < 0.3:
        width = rng.randint(60, 78)
        paras = [_wrap(p, width) for p in paras]
    text = "\n\n".join(paras)
    return text.replace("\n", "\r\n") if kind >= 0.90 and rng.random() < 0.1 else text


def mixed_corpus(mb: float, seed: int = 0) -> list[str]:
    """~``mb`` MB (UTF-8) of documents: ~90 % plain ASCII prose, the rest non-ASCII text, mojibake,
    HTML entities, CRLF line ends, control characters and documents in other scripts."""
    rng = random.Random(seed)
    vocab = _COMMON * 20 + [
        "".join(rng.choices("etaoinshrdlucmfwypvbgkqjxz", k=rng.randint(2, 11))) for _ in range(3000)
    ]
    docs: list[str] = []
    size = 0
    while size < mb * 1e6:
        doc = _doc(rng, vocab)
        docs.append(doc)
        size += len(doc.encode("utf-8"))
    return docs


def bench_fast_path(mb: float) -> float:
    """Print MB/s of plain per-document ftfy and of clean_text on the mixed corpus; return the ratio.

    The two (and the per-document fast path alone: fixed-point documents skipped, the others through
    ftfy whole, to show what the per-line part adds) are timed document by document, interleaved, so
    that load from other processes on a shared machine hits them alike; clean_text goes first (cold)."""
    docs = mixed_corpus(mb)
    size = sum(len(d.encode("utf-8")) for d in docs)
    fixed = [is_ftfy_fixed_point(d) for d in docs]
    fixed_bytes = sum(len(d.encode("utf-8")) for d, f in zip(docs, fixed) if f)
    print(
        f"mixed corpus: {size / 1e6:.1f} MB, {len(docs)} docs; ftfy fixed points (no ftfy at all): "
        f"{sum(fixed) / len(docs):.1%} of docs, {fixed_bytes / size:.1%} of bytes"
    )
    params = CleanParams()
    fast_s = doc_s = base_s = 0.0
    bad_fast = bad_doc = 0
    clock = time.perf_counter
    for d in docs:
        t0 = clock()
        fast = clean_text(d, params)
        t1 = clock()
        per_doc = d if is_ftfy_fixed_point(d) else ftfy.fix_text(d, normalization="NFC")
        t2 = clock()
        want = ftfy.fix_text(d, normalization="NFC")
        t3 = clock()
        fast_s, doc_s, base_s = fast_s + t1 - t0, doc_s + t2 - t1, base_s + t3 - t2
        bad_fast += fast != want
        bad_doc += per_doc != want
    if bad_fast or bad_doc:  # not an assert: it must hold under python -O too
        raise SystemExit(
            f"outputs differ from plain ftfy.fix_text: clean_text on {bad_fast}, the per-document fast path on "
            f"{bad_doc} of {len(docs)} documents"
        )
    ratio = base_s / fast_s
    print(f"plain ftfy.fix_text per document (baseline): {size / 1e6 / base_s:8.2f} MB/s")
    print(f"fast path per document only:                 {size / 1e6 / doc_s:8.2f} MB/s (x{base_s / doc_s:.1f})")
    print(f"clean_text (fast path per document + line):  {size / 1e6 / fast_s:8.2f} MB/s")
    print(f"ratio clean_text / plain ftfy = {ratio:.1f} (target >= 5); outputs identical: True")
    return ratio


# ---------------------------------------------------------------------------------------------- stage


def make_raw(d: Path, mb: float, *, files: int = 2, seed: int = 0, docs_per_file: int | None = None) -> int:
    """A raw dir (manifest + jsonl.zst files) of ~``mb`` MB of varied text, 1 doc in 10 with mojibake."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("etaoinshrdlucmfwypvbgkqjxz") for _ in range(rng.randint(1, 10))) for _ in range(20000)]
    vocab += ["café", "naïve", "Ã©tÃ©", "â€™s", "Straße", "日本語"]
    d.mkdir(parents=True, exist_ok=True)
    per_file = mb * 1e6 / files
    entries, total = [], 0
    for f in range(files):
        name = f"train{f:02d}.jsonl.zst"
        cctx = zstandard.ZstdCompressor(level=1)
        size = 0
        with open(d / name, "wb") as fh, cctx.stream_writer(fh) as w:
            while size < per_file:
                lines = []
                for _ in range(200):
                    words = rng.choices(vocab, k=rng.randint(50, 1500))
                    text = " ".join(words)
                    size += len(text)
                    lines.append(
                        json.dumps(
                            {"text": text, "meta": {"pile_set_name": rng.choice(["Pile-CC", "Books3", "Github"])}}
                        )
                    )
                w.write(("\n".join(lines) + "\n").encode())
        total += size
        entries.append(
            {
                "path": name,
                "source": "bench",
                "pile_set_name": "Pile-CC",
                "split": None,
                "format": "jsonl.zst",
                "bytes": (d / name).stat().st_size,
                "sha256": "",
            }
        )
    (d / "manifest.json").write_text(json.dumps({"version": 1, "files": entries}))
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-stage", action="store_true", help="only the fast-path measurement")
    a = ap.parse_args()
    bench_fast_path(a.mb)
    if a.no_stage:
        return
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        size = make_raw(td / "raw", a.mb)
        from cgpt.data.download.raw import read_raw_manifest
        from cgpt.data.formats import iter_records

        t = time.perf_counter()
        n = sum(1 for e in read_raw_manifest(td / "raw") for _ in iter_records(td / "raw" / e["path"], e["format"]))
        read_s = time.perf_counter() - t
        print(f"corpus: {size / 1e6:.1f} MB text, {n} docs; raw read (zstd+JSON only): {size / 1e6 / read_s:.1f} MB/s")
        res = {}
        for w in (1, a.workers):
            st = clean(CleanParams(workers=w), td / "raw", td / f"clean{w}", progress=False)["timing"]
            res[w] = st
            print(f"workers={w}: {st['mb_per_s']:.2f} MB/s, {st['docs_per_s']:.0f} docs/s ({st['seconds']:.1f} s)")
        same = all(
            (td / "clean1" / p.name).read_bytes() == p.read_bytes() for p in (td / f"clean{a.workers}").iterdir()
        )
        print(
            f"ratio workers={a.workers} / workers=1 = {res[a.workers]['mb_per_s'] / res[1]['mb_per_s']:.2f} "
            f"(ideal {a.workers}); outputs byte-identical: {same}"
        )


if __name__ == "__main__":
    main()
