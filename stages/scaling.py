"""DVC entry point of the family's scaling stage (`python -m stages.scaling`); the work is in cgpt.stages.scaling."""

from cgpt.core.project import Project
from cgpt.core.runtime import run_main
from cgpt.stages.scaling import run

if __name__ == "__main__":
    run_main(lambda: run(Project.at(".")))
