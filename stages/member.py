"""DVC entry point of a family member's stages (`python -m stages.member <train|evaluate|export> <name>`);
the work is in cgpt.stages.member."""

import sys

from cgpt.core.project import Project
from cgpt.core.runtime import fail, run_main
from cgpt.stages.member import MEMBER_STAGES, run

if __name__ == "__main__":
    if len(sys.argv) != 3:
        fail(f"usage: python -m stages.member <{'|'.join(MEMBER_STAGES)}> <member name>")
    run_main(lambda: run(Project.at("."), sys.argv[1], sys.argv[2]))
