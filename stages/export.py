"""DVC entry point of the export stage (`python -m stages.export`); the work is in cgpt.stages.export."""

from cgpt.stages import main

if __name__ == "__main__":
    main("export")
