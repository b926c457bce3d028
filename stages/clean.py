"""DVC entry point of the clean stage (`python -m stages.clean`); the work is in cgpt.stages.clean."""

from cgpt.stages import main

if __name__ == "__main__":
    main("clean")
