"""DVC entry point of the train stage (`python -m stages.train`); the work is in cgpt.stages.train."""

from cgpt.stages import main

if __name__ == "__main__":
    main("train")
