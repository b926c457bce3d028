"""DVC stage download: sources in params.yaml -> data/raw/ (+ manifest.json), metrics/download.json."""

from stages._common import DATA, params, publish_data_stats

from cgpt.data.download import download
from cgpt.runtime import run_main


def main() -> None:
    p = params()
    publish_data_stats(p, "download", download(p.download, DATA / "raw"))


if __name__ == "__main__":
    run_main(main)
