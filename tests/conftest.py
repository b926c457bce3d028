"""Shared fixtures. ``../shared`` (beside the repo) is optional: tests that need it skip."""

from __future__ import annotations

from pathlib import Path

import pytest

# setuptools first: its distutils shim must be in place before anything imports the standard library's
# distutils (lm-eval's dependencies do), or torch.compile's C++ builder, later in the same session,
# fails setuptools' own check ("AssertionError: .../distutils/core.py")
import setuptools  # noqa: F401  isort: skip
from paths import GPT2_TOKENIZER


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


@pytest.fixture(scope="session")
def built_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline (tests/e2e_project.py) after one `dvc repro`, built once per session; copy it
    (e2e_project.copy_project) before changing anything."""
    from e2e_project import build_project

    return build_project(tmp_path_factory.mktemp("e2e") / "built")


@pytest.fixture(autouse=True)
def _each_test_on_its_own_mlflow_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3's ``set_tracking_uri`` (a test loading ``models:/...``) exports MLFLOW_TRACKING_URI for
    the whole process, which would send every later test's runs to that store: each test starts
    without it, so a project's runs go to its own ``mlflow.db`` unless the test sets one."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
