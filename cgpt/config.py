"""params.yaml as one validated object: every section, and the checks that span sections.

What the always-run ``sources`` stage, ``cgpt check`` and the flows validate before anything runs,
so a typo anywhere stops everything first. The stages themselves read only their own sections
(:mod:`cgpt.core.sections`, each stage's ``StageParams``), so an edit of one section re-runs the stages
that read it and no others. A bad value stops everything with one line naming the key, the value
and what was expected::

    params.yaml: model.n_head = 5: must divide model.d_model = 192

Each section's model lives beside the code that owns it (``cgpt/data/*/params.py``,
``cgpt/model/params.py``, ``cgpt/train/params.py``, ...) and is composed here. Also here: the
``dvc exp run -S`` override grammar, applied to the whole file.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, model_validator

from cgpt.core.errors import ConfigError
from cgpt.core.sections import PARAMS_FILE, parse_sections, read_params_file
from cgpt.data.clean.params import CleanParams
from cgpt.data.download.params import DownloadParams
from cgpt.data.tokenize.params import TokenizeParams
from cgpt.eval.params import EvaluateOverrides, EvaluateParams
from cgpt.export.params import ExportParams
from cgpt.family.params import FamilyParams, member_sections
from cgpt.tracking.params import TrackingParams
from cgpt.train.params import TrainingSections

__all__ = ["PARAMS_FILE", "Params", "apply_overrides", "dvc_overrides", "load_params", "parse_params"]


class FamilySection(FamilyParams):
    """``family:`` as the whole file has it: ``family.evaluate`` checked key by key against the
    ``evaluate:`` section's schema (the family's own schema leaves it a mapping, so that a member's
    training does not depend on the evaluation code)."""

    evaluate: EvaluateOverrides = EvaluateOverrides()  # type: ignore[valid-type]


class Params(TrainingSections):
    """The whole params.yaml; every section optional (its defaults are the documented ones)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    download: DownloadParams = DownloadParams()
    clean: CleanParams = CleanParams()
    tokenize: TokenizeParams = TokenizeParams()
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()
    tracking: TrackingParams = TrackingParams()
    family: FamilySection = FamilySection()

    @model_validator(mode="after")
    def _sections_agree(self) -> Params:
        official = {s.split for s in self.download.sources if s.split}
        for split in self.evaluate.splits:
            if getattr(self.tokenize.split, split) == 0 and split not in official:
                raise ValueError(
                    f"evaluate.splits includes {split!r}, but tokenize.split.{split} = 0 and no download source "
                    f"has split: {split}, so that split will be empty; remove it from evaluate.splits"
                )
        for name in self.family.members:
            if name == self.train.run_name:
                raise ValueError(
                    f"family.members.{name}: the name is train.run_name's, and both would write runs/{name}/; "
                    "rename the member or the single model's run"
                )
            member_sections(self.family, name, self.train)  # one line naming the member's bad key
        return self


def parse_params(raw: dict[str, Any] | None, source: str = PARAMS_FILE, root: Path | None = None) -> Params:
    """Validate a whole params mapping; raise :class:`ConfigError` with one line on the first problem.

    ``root`` is where relative paths in the params start (default: the working directory).
    """
    return parse_sections(raw, Params, source, root)


def load_params(path: str | Path = PARAMS_FILE, set_params: Sequence[str] = ()) -> Params:
    """Read and validate a whole params file, with ``dvc exp run -S`` style ``set_params`` applied
    first (see :func:`apply_overrides`), so an experiment's parameters are checked before DVC runs it."""
    path = Path(path)
    raw = read_params_file(path)
    source = str(path)
    if set_params:
        raw = apply_overrides(raw, set_params)
        source = f"{path} with set_params"
    return parse_sections(raw, Params, source, root=path.resolve().parent)


# ---- dvc exp run -S ---------------------------------------------------------------------------


def _parse_override(text: str) -> Any:
    """One ``[params.yaml:][+|++|~]key[=value]`` as Hydra parses it (DVC's ``-S`` grammar)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    file, sep, rest = text.partition(":") if ":" in text.partition("=")[0] else ("", "", text)
    if sep and file != PARAMS_FILE:
        raise ConfigError(f"set_params: {text!r}: cgpt's parameters live in {PARAMS_FILE}, not {file}")
    try:
        (override,) = OverridesParser.create().parse_overrides([rest])
    except HydraException as exc:
        detail = str(exc).splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"set_params: {text!r} is not key=value, +key=value or ~key ({detail})") from None
    key = override.key_or_group
    if override.package is not None or not key or "" in key.split(".") or "/" in key:
        raise ConfigError(f"set_params: {text!r}: expected a dotted params key such as train.lr")
    if override.is_sweep_override():
        raise ConfigError(f"set_params: {text!r} is a sweep; give one value (one flow run is one experiment)")
    return override


def _lookup(data: Any, parts: list[str]) -> tuple[bool, Any]:
    for part in parts:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return False, None
    return True, data


def _merge(old: Any, new: Any) -> Any:
    """Hydra's merge of an override value: mappings merge key by key, anything else replaces."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{k: _merge(old.get(k), v) for k, v in new.items()}}
    return copy.deepcopy(new)


def _assign(data: dict[str, Any], parts: list[str], value: Any, text: str) -> None:
    node: Any = data
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"set_params: {text!r}: {'.'.join(parts)} does not name a key of {PARAMS_FILE}")
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = _merge(node[int(last)], value)
    elif isinstance(node, dict):
        node[last] = _merge(node.get(last), value)
    else:
        raise ConfigError(f"set_params: {text!r}: {'.'.join(parts)} does not name a key of {PARAMS_FILE}")


def apply_overrides(raw: dict[str, Any] | None, overrides: Sequence[str]) -> dict[str, Any]:
    """``raw`` (a params mapping, not changed) with ``dvc exp run -S`` overrides applied, as DVC
    will write them into params.yaml (:func:`dvc_overrides`): ``key=value`` and ``++key=value`` set
    a key, even one params.yaml leaves at its default; ``+key=value`` adds a key that is not set;
    ``~key`` removes one (back to cgpt's default). Values follow Hydra's grammar, as in DVC:
    ``1e-3`` is a float, ``null`` is None, ``[1,2]`` a list, ``'1'`` a string.

    Only the mapping is computed here; validating it is :func:`parse_params`'s job.
    """
    data = copy.deepcopy(raw) if raw else {}
    for text in overrides:
        override = _parse_override(text)
        parts = override.key_or_group.split(".")
        value = override.value()
        found, current = _lookup(data, parts)
        if override.is_delete():
            if current is None:  # Hydra treats a null value as absent too
                raise ConfigError(f"set_params: {text!r}: {override.key_or_group} is not set in {PARAMS_FILE}")
            if value is not None and value != current:
                raise ConfigError(f"set_params: {text!r}: {override.key_or_group} is {current!r}, not {value!r}")
            parent = _lookup(data, parts[:-1])[1]
            del parent[int(parts[-1]) if isinstance(parent, list) else parts[-1]]
        elif override.is_add() and current is not None and not isinstance(value, (dict, list)):
            raise ConfigError(
                f"set_params: {text!r}: {override.key_or_group} is already set "
                f"(to {current!r}); drop the + to change it"
            )
        else:
            _assign(data, parts, value, text)
    return data


def dvc_overrides(overrides: Sequence[str]) -> list[str]:
    """The ``-S`` arguments for ``dvc exp run``: a plain ``key=value`` becomes ``++key=value``
    (DVC refuses to set a key params.yaml does not spell out, and most of cgpt's keys are optional;
    cgpt's validator has already refused misspelt ones), ``params.yaml:`` prefixes are dropped."""
    out = []
    for text in overrides:
        override = _parse_override(text)
        rest = text.partition(":")[2] if ":" in text.partition("=")[0] else text
        out.append(f"++{rest}" if override.type.name == "CHANGE" else rest)
    return out
