"""Shared fixtures. ``../shared`` (beside the repo) is optional: tests that need it skip."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GPT2_TOKENIZER = SHARED / "gpt2-tokenizer"


@pytest.fixture
def gpt2_tokenizer_dir() -> Path:
    if not (GPT2_TOKENIZER / "vocab.json").is_file():
        pytest.skip("../shared/gpt2-tokenizer is absent (fresh clone without shared/)")
    return GPT2_TOKENIZER


@pytest.fixture(scope="session")
def harness():
    """One Prefect test server for the whole session (it takes ~25 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
