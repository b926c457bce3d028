"""DVC entry point of the evaluate stage (`python -m stages.evaluate` in the project root); the work is cgpt.stages.evaluate."""

from cgpt.stages import main

if __name__ == "__main__":
    main("evaluate")
