"""Prefect deployment steps for cgpt (used by prefect.yaml's ``pull`` section on a worker).

Prefect's own ``set_working_directory`` with ``{{ $CGPT_PROJECT }}`` silently stays in the
worker's temporary folder when the variable is not set, and the run then fails with a missing
``flows/pipeline.py``; this step says what is wrong in one line instead, in the flow run's log as
well as on the worker's console (Prefect 3.9 shows a failed pull step's exception only there).
"""

from __future__ import annotations

import os
from uuid import UUID

from prefect.logging.loggers import flow_run_logger

from cgpt.core.errors import CgptError
from cgpt.core.project import Project

PROJECT_ENV = "CGPT_PROJECT"


def enter_project(directory: str | None = None) -> dict[str, str]:
    """Make the cgpt project the flow run's working directory: ``directory`` if given (e.g. the
    output of a ``git_clone`` step), else the worker's ``$CGPT_PROJECT``. Returns ``{"directory":
    <the project>}`` (Prefect then runs the flow there). One line if it is not a cgpt project."""
    try:
        where = directory or os.environ.get(PROJECT_ENV)
        if not where:
            raise CgptError(
                f"the worker was not told where the cgpt project is: start it with {PROJECT_ENV}=/path/to/"
                "project (or set it in the deployment's job_variables.env)"
            )
        root = Project.at(where).root
    except CgptError as exc:
        _log_to_run(f"error: {exc}")
        raise
    os.chdir(root)
    return {"directory": str(root)}


def _log_to_run(message: str) -> None:
    """An error line in the log of the flow run the worker is preparing (its id in
    ``$PREFECT__FLOW_RUN_ID``). Through Prefect's flow-run logger, whose records carry every field
    the console's format names (``flow_run_name`` too: a bare ``extra={"flow_run_id": ...}`` made
    the worker print ``--- Logging error --- KeyError: 'flow_run_name'``)."""
    run_id = os.environ.get("PREFECT__FLOW_RUN_ID")  # set by the worker for the run being prepared
    try:
        flow_run_id = UUID(run_id) if run_id else None
    except ValueError:
        flow_run_id = None
    if flow_run_id is not None:
        flow_run_logger(flow_run_id=flow_run_id).error(message)
