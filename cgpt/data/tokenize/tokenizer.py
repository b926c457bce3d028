"""Byte-level BPE tokenizers (the GPT-2 / Cerebras-GPT kind): train one, or load a pretrained one.

Every tokenizer here is a ``tokenizers.Tokenizer`` with a ByteLevel pre-tokenizer (no prefix
space, GPT-2 regex), a ByteLevel decoder and ``<|endoftext|>`` registered as a special token (the
EOS appended after every document, and the padding id). The tokenize stage saves it as
``data/tokens/tokenizer.json``.
"""

from __future__ import annotations

import hashlib
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from cgpt.core.errors import DataError
from cgpt.core.fsutil import read_json_if_valid

EOS_TOKEN = "<|endoftext|>"
_HTTP_TIMEOUT_S = 60


def _finish(tok: Tokenizer) -> Tokenizer:
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([EOS_TOKEN])
    return tok


def train_tokenizer(texts_iter: Iterable[str], vocab_size: int, min_frequency: int) -> Tokenizer:
    """Train a byte-level BPE on ``texts_iter`` (deterministic: same texts, same tokenizer).

    The 256 byte symbols are always in the vocabulary (any text encodes); ``<|endoftext|>`` gets
    id 0. On a small corpus the vocabulary may end below ``vocab_size``.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts_iter, trainer=trainer)
    return _finish(tok)


def byte_tokenizer() -> Tokenizer:
    """The byte-level tokenizer: a byte-level BPE with no merges, so every token is one byte of the
    UTF-8 text (GPT-2's byte-to-symbol table) and ``<|endoftext|>`` is id 0, the 256 bytes ids 1-256
    (vocabulary 257). The scaling family's default (docs/family.md): with 257 rows the token embedding
    is a few percent of a small model instead of most of it, and the corpus yields ~4x more tokens
    than an 8192-token BPE (fewer passes over the same text). It is a ``tokenizers`` BPE like the
    others, so the export, the Hugging Face tokenizer and evaluation need nothing special."""
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet(), key=_byte_of_symbol)
    vocab = {EOS_TOKEN: 0, **{sym: i + 1 for i, sym in enumerate(symbols)}}
    return _finish(Tokenizer(models.BPE(vocab=vocab, merges=[])))


def _byte_of_symbol(symbol: str) -> int:
    """The byte GPT-2's byte-to-unicode table maps to ``symbol`` (printable bytes map to themselves)."""
    return _SYMBOL_BYTES[symbol]


def _gpt2_byte_symbols() -> dict[str, int]:
    """GPT-2's ``bytes_to_unicode`` inverted: printable Latin-1 bytes stand for themselves, the other
    68 bytes for the code points from 256 up, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


_SYMBOL_BYTES = _gpt2_byte_symbols()


def _from_vocab_merges(vocab: Path, merges: Path) -> Tokenizer:
    try:
        model = models.BPE.from_file(str(vocab), str(merges))
    except Exception as exc:  # tokenizers raises plain Exception on bad files
        raise DataError(f"{vocab}, {merges}: not a GPT-2 style vocab.json + merges.txt ({exc})") from None
    return _finish(Tokenizer(model))


def _from_json(path: Path) -> Tokenizer:
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a tokenizers tokenizer.json ({exc})") from None
    if tok.token_to_id(EOS_TOKEN) is None:
        tok.add_special_tokens([EOS_TOKEN])
    return tok


def _download(url: str, dest: Path) -> Path:
    try:
        with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as resp:  # noqa: S310 - http(s) only
            dest.write_bytes(resp.read())
    except Exception as exc:
        raise DataError(f"{url}: download failed ({exc}); check the URL or use a local tokenizer.path") from None
    return dest


def load_tokenizer(path_or_url: str | Path) -> Tokenizer:
    """Load a byte-level BPE from a dir (tokenizer.json, or vocab.json + merges.txt), a
    tokenizer.json / vocab.json file, or an http(s) URL to a tokenizer.json, a vocab.json (merges.txt
    beside it) or a folder holding either."""
    s = str(path_or_url)
    if s.startswith(("http://", "https://")):
        with tempfile.TemporaryDirectory() as td:
            tdp = Path(td)
            name = urllib.parse.urlparse(s).path.rsplit("/", 1)[-1]
            if name.endswith(".json") and name != "vocab.json":
                return _from_json(_download(s, tdp / "tokenizer.json"))
            base = s[: len(s) - len(name)] if name == "vocab.json" else s.rstrip("/") + "/"
            if name != "vocab.json":
                try:
                    return _from_json(_download(base + "tokenizer.json", tdp / "tokenizer.json"))
                except DataError:
                    pass
            _download(base + "vocab.json", tdp / "vocab.json")
            _download(base + "merges.txt", tdp / "merges.txt")
            return _from_vocab_merges(tdp / "vocab.json", tdp / "merges.txt")
    p = Path(path_or_url)
    if p.is_dir():
        if (p / "tokenizer.json").is_file():
            return _from_json(p / "tokenizer.json")
        if (p / "vocab.json").is_file() and (p / "merges.txt").is_file():
            return _from_vocab_merges(p / "vocab.json", p / "merges.txt")
        raise DataError(
            f"{p}: no tokenizer.json or vocab.json + merges.txt in this folder; point tokenizer.path at one"
        )
    if p.is_file():
        if p.name == "vocab.json" or (p.suffix == ".json" and (p.parent / "merges.txt").is_file() and _is_vocab(p)):
            return _from_vocab_merges(p, p.parent / "merges.txt")
        return _from_json(p)
    raise DataError(
        f"{p}: tokenizer path not found; set tokenize.tokenizer.path to a folder, a tokenizer.json or a URL"
    )


def _is_vocab(p: Path) -> bool:
    obj = read_json_if_valid(p)
    return isinstance(obj, dict) and "model" not in obj


def eos_token_id(tok: Tokenizer) -> int:
    eid = tok.token_to_id(EOS_TOKEN)
    if eid is None:
        raise DataError(f"tokenizer has no {EOS_TOKEN} token; use a GPT-2 style tokenizer")
    return eid


def tokenizer_json(tok: Tokenizer) -> str:
    """The canonical serialized form (what ``tokens_dir/tokenizer.json`` holds)."""
    return tok.to_str(pretty=True)


def tokenizer_sha256(tok: Tokenizer) -> str:
    return hashlib.sha256(tokenizer_json(tok).encode("utf-8")).hexdigest()


def save_tokenizer(tok: Tokenizer, tokens_dir: Path) -> Path:
    path = Path(tokens_dir) / "tokenizer.json"
    path.write_text(tokenizer_json(tok), encoding="utf-8")
    return path
