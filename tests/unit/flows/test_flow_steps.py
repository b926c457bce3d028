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


def test_the_error_reaches_the_run_log_in_the_consoles_format(tmp_path, monkeypatch):
    """The worker's console formats ``prefect.flow_runs`` records with ``%(flow_run_name)r``: the
    record of the failed pull step must carry it (it lacked it: ``KeyError: 'flow_run_name'``)."""
    import logging
    import uuid
    from pathlib import Path

    import prefect
    import yaml
    from prefect.logging.formatters import PrefectFormatter
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    config = yaml.safe_load((Path(prefect.__file__).parent / "logging/logging.yml").read_text())
    standard = config["formatters"]["standard"]  # the console's formatter
    console = PrefectFormatter(format=standard["format"], flow_run_fmt=standard["flow_run_fmt"])
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    monkeypatch.delenv("CGPT_PROJECT", raising=False)
    run_id = str(uuid.uuid4())
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", run_id)
    try:  # no API: the record stays here (no temporary server started for it)
        with temporary_settings({PREFECT_LOGGING_TO_API_ENABLED: False}), pytest.raises(CgptError):
            enter_project()
    finally:
        logger.removeHandler(handler)
    assert len(records) == 1 and str(records[0].flow_run_id) == run_id
    line = console.format(records[0])
    assert "Flow run '<unknown>' - error: the worker was not told where the cgpt project is" in line
