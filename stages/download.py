"""DVC entry point of the download stage (`python -m stages.download`); the work is in cgpt.stages.download."""

from cgpt.stages import main

if __name__ == "__main__":
    main("download")
