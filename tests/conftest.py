"""Shared fixtures. ``../shared`` (beside the repo) is optional: tests that need it skip."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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


def load_flow_module(name: str) -> ModuleType:
    """Import ``flows/<name>.py`` (flows/ is not a package) as ``flows_<name>``."""
    spec = importlib.util.spec_from_file_location(f"flows_{name}", REPO / "flows" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
