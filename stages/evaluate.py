"""DVC entry point of the evaluate stage (`python -m stages.evaluate`); the work is in cgpt.stages.evaluate."""

from cgpt.stages import main

if __name__ == "__main__":
    main("evaluate")
