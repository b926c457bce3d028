"""Fault injection for the reliability tests: kill the process at a named point, like a power cut.

``CGPT_FAULT=<point>[@<n>]`` sends SIGKILL to this process the n-th time (default: the first)
it reaches ``fault_point("<point>")``. Unset (always, outside tests), a call costs one dict lookup.
The points sit where a kill is most likely to leave something half done: between the files of a
checkpoint, right after a rename, between the parts of a data stage.

In distributed training every rank reaches the same points; ``CGPT_FAULT=rank<k>:<point>[@<n>]``
kills only the process whose ``RANK`` (set by the launcher) is ``k``, as when one machine of a
job dies, so the tests can check that the others are brought down and a rerun resumes.

``CGPT_FAULT=parent:<point>[@<n>]`` kills this process's *parent* instead (``dvc repro``, which
ran the stage) and carries on once the orphan watcher (:mod:`cgpt.core.orphan`) has had its turn,
so the stage must stop itself right at that point (the train stage: with a checkpoint there).
"""

from __future__ import annotations

import os
import signal
import time

ENV = "CGPT_FAULT"
_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    who, sep, rest = spec.partition(":")
    target = os.getpid()
    pairs: list[tuple[int, int]] = []
    if sep and who == "parent":
        from cgpt.core.orphan import watched

        # the dvc process itself: the parent, or the shell's parent when dvc ran the command
        # through a shell that did not exec it (as some /bin/sh do)
        pairs = watched()
        target, spec = pairs[-1][1], rest
    elif sep and who.startswith("rank"):
        if os.environ.get("RANK", "0") != who.removeprefix("rank"):
            return
        spec = rest
    point, _, nth = spec.partition("@")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(target, signal.SIGKILL)
        if target != os.getpid():
            from cgpt.core.orphan import POLL_S, orphaned

            while orphaned(pairs) is None:  # until this process (or its shell) is re-parented
                time.sleep(0.01)
            time.sleep(3 * POLL_S)  # the watcher notices and sends SIGTERM (handled at once, in this thread)
