"""params.yaml read and validated section by section: the loader every stage shares.

Each stage validates only the sections it reads (its own schema, a :class:`Sections` subclass named
``StageParams`` in ``cgpt/stages/<stage>.py``), so its DVC deps are those sections and their schema
modules — an edit to the evaluation options re-runs evaluation, not training. The guarantee that a
typo anywhere stops everything before any work stays: the always-run ``sources`` stage (and
``cgpt check``) validates the whole file (:class:`cgpt.config.Params`) first.

This module imports no section schema on purpose (it is every stage's dep); the errors it raises
are the one line :class:`cgpt.config.Params` gives for the same mistake::

    params.yaml: model.n_head = 5: must divide model.d_model = 192
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from cgpt.core.errors import ConfigError

PARAMS_FILE = "params.yaml"


class Sections(BaseModel):
    """A view of params.yaml holding only some of its sections; the others are not read here.

    Each field is one section (``train: TrainParams = TrainParams()``), strict inside (a misspelt
    key of a section a stage reads is refused), while sections it does not declare are ignored
    (the whole file's check is the ``sources`` stage's)."""

    model_config = ConfigDict(extra="ignore", validate_default=True)


S = TypeVar("S", bound=BaseModel)


def optional_fields(model: type[BaseModel], keys: tuple[str, ...]) -> dict[str, Any]:
    """``model``'s fields ``keys``, each optional with default None, keeping their constraints
    (for ``create_model``: a family member's or the family's overrides of a section's keys)."""
    out: dict[str, Any] = {}
    for key in keys:
        info: FieldInfo = model.model_fields[key]
        annotation = Annotated[info.annotation | None, *info.metadata] if info.metadata else info.annotation | None
        out[key] = (annotation, None)
    return out


def format_error(err: dict[str, Any], source: str) -> str:
    """One pydantic error as the one line users see: ``source: key = value: why``."""
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        return (
            f"{source}: unknown key {loc} (value {value!r}); check the spelling against the README's params reference"
        )
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{source}: {loc} is required"
    if not loc:
        return f"{source}: {msg}"
    if isinstance(value, (dict, list)):  # a check across several keys of one section
        return f"{source}: {loc}.{msg}" if re.match(r"^[\w.\[\]]+ = ", msg) else f"{source}: {loc}: {msg}"
    return f"{source}: {loc} = {value!r}: {msg}"


def parse_sections(
    raw: dict[str, Any] | None, schema: type[S], source: str = PARAMS_FILE, root: Path | None = None
) -> S:
    """Validate a params mapping against ``schema``; raise :class:`ConfigError` with one line on the
    first problem. ``root`` is where relative paths in the params start (default: the working directory)."""
    try:
        return schema.model_validate(raw or {}, context={"root": root or Path.cwd()})
    except ValidationError as exc:
        errors = exc.errors()
        line = format_error(errors[0], source)
        if len(errors) > 1:
            line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        raise ConfigError(line) from None


def read_params_file(path: Path) -> dict[str, Any] | None:
    """params.yaml as a mapping (None when empty); one line when it is missing or not YAML."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file (run from the project root, or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (download, clean, ...), got {type(raw).__name__}")
    return raw


def load_sections(path: str | Path, schema: type[S]) -> S:
    """The sections ``schema`` declares, read from the params file at ``path`` and validated."""
    path = Path(path)
    return parse_sections(read_params_file(path), schema, str(path), root=path.resolve().parent)
