"""DVC entry point of the clean stage (`python -m stages.clean` in the project root); the work is cgpt.stages.clean."""

from cgpt.stages import main

if __name__ == "__main__":
    main("clean")
