"""A cgpt project on disk: the folder holding ``params.yaml`` and ``dvc.yaml``, and where each stage's files live.

Every stage function takes a :class:`Project` (never the working directory), so ``dvc repro``,
the ``cgpt`` command (``--project``) and the Prefect flows run the same code from anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TypeVar

from cgpt.core.errors import ConfigError
from cgpt.core.sections import PARAMS_FILE, Sections, load_sections

__all__ = ["PARAMS_FILE", "Project"]

S = TypeVar("S", bound=Sections)


@dataclass(frozen=True)
class Project:
    """``layout``: ``model`` for the single model's stages (``data/tokens``, ``runs/<name>``);
    ``family`` for a family member's (``family/tokens``, ``family/runs/<name>``: the family is its
    own DVC project in ``family/``, whose outputs must lie inside it). The same stage functions run
    either way."""

    root: Path
    layout: Literal["model", "family"] = "model"

    @classmethod
    def at(cls, root: str | Path) -> Project:
        """The project at ``root``; one line if it is not one."""
        path = Path(root).expanduser().resolve()
        if not (path / PARAMS_FILE).is_file():
            raise ConfigError(
                f"{path}: no {PARAMS_FILE} here; run inside a cgpt project (the folder holding dvc.yaml) "
                "or pass --project"
            )
        return cls(path)

    @property
    def params_file(self) -> Path:
        return self.root / PARAMS_FILE

    def load(self, view: type[S]) -> S:
        """The sections of params.yaml that ``view`` declares (a stage's ``StageParams``; the whole
        file is :func:`cgpt.config.load_params`'s), validated."""
        return load_sections(self.params_file, view)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def clean(self) -> Path:
        return self.data / "clean"

    @property
    def tokens(self) -> Path:
        """The token shards this layout's models train on."""
        return self.family_tokens if self.layout == "family" else self.data / "tokens"

    @property
    def family_tokens(self) -> Path:
        """The family's own tokenization of ``data/clean`` (``family.tokenizer``), ``family/tokens``."""
        return self.family / "tokens"

    def for_family(self) -> Project:
        """This project as a family member's stages see it."""
        return replace(self, layout="family")

    @property
    def metrics(self) -> Path:
        return self.family / "metrics" if self.layout == "family" else self.root / "metrics"

    @property
    def runs(self) -> Path:
        return self.family / "runs" if self.layout == "family" else self.root / "runs"

    def run_dir(self, run_name: str) -> Path:
        return self.runs / run_name

    @property
    def family(self) -> Path:
        """The model family's DVC project (family/dvc.yaml): ``tokens/``, ``runs/``, ``metrics/`` (the
        ``family`` layout's), ``points/``, ``scaling/``, ``plots/``, ``mup/`` (the µP sweep)."""
        return self.root / "family"

    @property
    def family_points(self) -> Path:
        return self.family / "points"

    @property
    def family_scaling(self) -> Path:
        return self.family / "scaling"

    @property
    def family_plots(self) -> Path:
        return self.family / "plots"

    @property
    def scaling_metrics(self) -> Path:
        return self.family / "scaling_metrics.json"

    @property
    def sweep_dir(self) -> Path:
        return self.family / "mup"

    @property
    def sweep_trials(self) -> Path:
        """The µP sweep's trial runs, ``runs/sweep/<trial>/``."""
        return self.runs / "sweep"
