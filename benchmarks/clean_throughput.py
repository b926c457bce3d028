"""Clean throughput (ftfy NFC + filters) at 1 and N workers; baseline = the 1-worker run.

Prints MB/s and docs/s for each worker count and ``ratio = N workers / 1 worker`` (ideal = N on
an idle machine), plus the raw read rate (zstd + JSON only) that bounds a shard's skip cost.

    python benchmarks/clean_throughput.py --mb 20 --workers 2
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import zstandard

from cgpt.data.clean.cleaner import clean
from cgpt.data.clean.params import CleanParams


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
    a = ap.parse_args()
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
            st = clean(CleanParams(workers=w), td / "raw", td / f"clean{w}", progress=False)
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
