"""DVC stage clean: data/raw/ -> data/clean/ (ftfy NFC, filters, dedup), metrics/clean.json."""

from stages._common import DATA, params, publish_data_stats

from cgpt.data.clean import clean
from cgpt.runtime import run_main


def main() -> None:
    p = params()
    publish_data_stats(p, "clean", clean(p.clean, DATA / "raw", DATA / "clean"))


if __name__ == "__main__":
    run_main(main)
