"""Prefect flows over the cgpt stages (importable as ``flows.<name>``; also runnable as scripts)."""
