"""The µP sweep's choice written into params.yaml: ``family.mup.lr``, ``init_std``, ``output_mult``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from yaml import safe_load as yaml_safe_load

from cgpt.config import parse_params
from cgpt.core.errors import ConfigError
from cgpt.core.fsutil import write_text_atomic

#: the keys the sweep writes into params.yaml (``family.mup.<key>``), in this order
CHOSEN_KEYS = ("lr", "init_std", "output_mult")


def write_chosen_params(params_file: Path, chosen: dict[str, Any]) -> dict[str, Any]:
    """Set ``family.mup.lr``, ``init_std``, ``output_mult`` in ``params_file`` to the chosen values.

    A ruamel.yaml round trip keeps comments, key order, flow-style mappings and quoting; every
    other key is left as it was. The new text is validated as params before it replaces the file
    (atomically), so a failed write never leaves a broken params.yaml. Returns the values before."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    params_file = Path(params_file)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )  # ruamel writes an empty value for null; params.yaml spells it out
    text = params_file.read_text(encoding="utf-8")
    data = yaml.load(text)
    if data is None:
        data = CommentedMap()
    if not isinstance(data, dict):
        raise ConfigError(f"{params_file}: expected a mapping of sections, got {type(data).__name__}")
    family = data.setdefault("family", CommentedMap())
    if family is None:
        family = data["family"] = CommentedMap()
    mup = family.get("mup")
    if mup is None:
        mup = family["mup"] = CommentedMap()
    before = {k: mup.get(k) for k in CHOSEN_KEYS}
    for k in CHOSEN_KEYS:
        mup[k] = float(chosen[k])
    buf = io.StringIO()
    yaml.dump(data, buf)
    new = buf.getvalue()
    parse_params(yaml_safe_load(new), f"{params_file} (with the sweep's values)", root=params_file.resolve().parent)
    write_text_atomic(params_file, new)
    return before
