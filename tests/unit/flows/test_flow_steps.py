"""The prefect.yaml pull step: enter the project a worker is told, or say in one line why not."""

from __future__ import annotations

import os

import pytest

from cgpt.core.errors import CgptError
from flows.steps import enter_project


@pytest.fixture(autouse=True)
def _keep_cwd():
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


def test_enters_the_project_named_by_the_worker(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text("{}\n")
    monkeypatch.setenv("CGPT_PROJECT", str(tmp_path))
    assert enter_project() == {"directory": str(tmp_path.resolve())}
    assert os.getcwd() == str(tmp_path.resolve())


def test_a_given_directory_wins(tmp_path, monkeypatch):
    (tmp_path / "clone").mkdir()
    (tmp_path / "clone/params.yaml").write_text("{}\n")
    monkeypatch.setenv("CGPT_PROJECT", "/nowhere")
    monkeypatch.chdir(tmp_path)
    assert enter_project("clone") == {"directory": str((tmp_path / "clone").resolve())}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (None, "the worker was not told where the cgpt project is: start it with CGPT_PROJECT=/path/to/project"),
        ("elsewhere", "no params.yaml here"),
    ],
)
def test_one_line_when_there_is_no_project(where, expected, tmp_path, monkeypatch):
    monkeypatch.delenv("CGPT_PROJECT", raising=False)
    if where:
        (tmp_path / where).mkdir()
        monkeypatch.setenv("CGPT_PROJECT", str(tmp_path / where))
    with pytest.raises(CgptError) as exc:
        enter_project()
    assert expected in str(exc.value) and "\n" not in str(exc.value)
