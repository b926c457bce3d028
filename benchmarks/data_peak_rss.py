"""Peak memory of clean + tokenize on a generated multi-GB jsonl.zst corpus (the memory bound).

Generates ``--gb`` GB of uncompressed text (fast: varied random words) in ``--files`` jsonl.zst
files, runs clean (``--workers``) and tokenize, and reports peak RSS: of this process
(RUSAGE_SELF), of the largest child (RUSAGE_CHILDREN), and of the whole process tree (psutil
sampling every 0.2 s, the sum over processes). Baseline = the input size: the ratio
peak-tree-RSS / input bytes shows that memory does not grow with the corpus.

    python benchmarks/data_peak_rss.py --gb 2 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clean_throughput import make_raw  # noqa: E402

from cgpt.data.clean.cleaner import clean  # noqa: E402
from cgpt.data.clean.params import CleanParams  # noqa: E402
from cgpt.data.tokenize.pack import tokenize_corpus  # noqa: E402
from cgpt.data.tokenize.params import TokenizeParams  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class TreeSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        me = psutil.Process()
        while not self._stop_evt.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a child may exit between listing and reading
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def stop(self) -> int:
        self._stop_evt.set()
        self.join()
        return self.peak


def maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0, help="uncompressed text to generate")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--tokenizer", default=str(REPO.parent / "shared" / "gpt2-tokenizer"))
    ap.add_argument("--dir", default=None, help="work dir (default: a temp dir)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as td:
        td = Path(td)
        t = time.perf_counter()
        size = make_raw(td / "raw", a.gb * 1000, files=a.files)
        print(
            f"generated {size / 1e9:.2f} GB text in {time.perf_counter() - t:.0f} s "
            f"({sum(f.stat().st_size for f in (td / 'raw').iterdir()) / 1e9:.2f} GB compressed)"
        )
        base_self = maxrss_mb(resource.RUSAGE_SELF)
        sampler = TreeSampler()
        sampler.start()
        st = clean(CleanParams(workers=a.workers), td / "raw", td / "clean", progress=False)["timing"]
        print(
            f"clean: {st['mb_per_s']:.1f} MB/s, {st['docs_per_s']:.0f} docs/s, {st['seconds']:.0f} s, "
            f"workers={st['workers']}"
        )
        tok = {"kind": "pretrained", "path": a.tokenizer} if Path(a.tokenizer).exists() else {"kind": "train"}
        ts = tokenize_corpus(
            TokenizeParams.model_validate({"tokenizer": tok}), td / "clean", td / "tokens", progress=False
        )
        print(
            f"tokenize: {ts['tokens_total']} tokens, {ts['timing']['tokens_per_s'] / 1e6:.2f} M tokens/s, "
            f"{ts['timing']['seconds']:.0f} s"
        )
        tree = sampler.stop() / 2**20
        print(
            f"peak RSS: main process {maxrss_mb(resource.RUSAGE_SELF):.0f} MB (after generation {base_self:.0f} MB), "
            f"largest child {maxrss_mb(resource.RUSAGE_CHILDREN):.0f} MB, whole tree (sampled) {tree:.0f} MB"
        )
        print(
            f"ratio peak tree RSS / input size = {tree * 2**20 / size:.3f} (a bound shows as this falling when --gb "
            "grows)"
        )


if __name__ == "__main__":
    main()
