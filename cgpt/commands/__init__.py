"""The `cgpt` subcommands that are more than a call to a stage: ``cgpt eval`` and ``cgpt scaling``
(argparse options apart, so ``cgpt --help`` stays instant)."""
