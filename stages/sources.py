"""DVC entry point of the sources stage (`python -m stages.sources`); the work is in cgpt.stages.sources."""

from cgpt.stages import main

if __name__ == "__main__":
    main("sources")
