"""DVC entry point of the tokenize stage (`python -m stages.tokenize`); the work is in cgpt.stages.tokenize."""

from cgpt.stages import main

if __name__ == "__main__":
    main("tokenize")
