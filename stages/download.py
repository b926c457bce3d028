"""DVC entry point of the download stage (`python -m stages.download` in the project root); the work is cgpt.stages.download."""

from cgpt.stages import main

if __name__ == "__main__":
    main("download")
