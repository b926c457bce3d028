"""Prefect deployment steps for cgpt (used by prefect.yaml's ``pull`` section on a worker).

Prefect's own ``set_working_directory`` with ``{{ $CGPT_PROJECT }}`` silently stays in the
worker's temporary folder when the variable is not set, and the run then fails with a missing
``flows/pipeline.py``; this step says what is wrong in one line instead, in the flow run's log as
well as on the worker's console (Prefect 3.9 shows a failed pull step's exception only there).
"""

from __future__ import annotations

import os

from prefect.logging import get_logger

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
        run_id = os.environ.get("PREFECT__FLOW_RUN_ID")  # set by the worker for the run being prepared
        if run_id:
            get_logger("prefect.flow_runs").error("error: %s", exc, extra={"flow_run_id": run_id})
        raise
    os.chdir(root)
    return {"directory": str(root)}
