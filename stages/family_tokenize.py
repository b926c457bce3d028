"""DVC entry point of the family's tokenize stage (family/dvc.yaml); the work is in cgpt.stages.family_tokenize."""

from cgpt.core.project import Project
from cgpt.core.runtime import run_main
from cgpt.stages.family_tokenize import run

if __name__ == "__main__":
    run_main(lambda: run(Project.at(".")))
