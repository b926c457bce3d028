"""DVC entry point of the train stage (`python -m stages.train` in the project root); the work is cgpt.stages.train."""

from cgpt.stages import main

if __name__ == "__main__":
    main("train")
