"""DVC stage tokenize: data/clean/ -> data/tokens/ (tokenizer.json, token shards, index.json)."""

from stages._common import DATA, params, publish_data_stats

from cgpt.data.pack import tokenize_corpus
from cgpt.runtime import run_main


def main() -> None:
    p = params()
    publish_data_stats(p, "tokenize", tokenize_corpus(p.tokenize, DATA / "clean", DATA / "tokens"))


if __name__ == "__main__":
    run_main(main)
