"""The ``python_function`` loader of cgpt's logged models: MLflow's own transformers pyfunc, with every
request's generation fitted into the model's context.

This file is shipped *inside* each logged model (``code/cgpt_textgen.py``, MLflow's ``code_paths``) and
named as the model's pyfunc ``loader_module``, so ``mlflow models serve`` and ``mlflow.pyfunc.load_model``
use it wherever the model goes, without cgpt installed: it imports only MLflow and transformers.
``mlflow.transformers.load_model`` is unaffected (it returns the plain pipeline).

Why it exists: transformers' text-generation pipeline asks for 256 new tokens by default and never looks at
the model's context, so on a model with ``n_positions`` 256 every request ran past the last position
embedding (``IndexError: index out of range``). Here each request gets:

* ``max_new_tokens`` clamped to ``n_positions - 1`` (at least 1 token of prompt remains), and
* the prompt cut from the left (transformers' ``handle_long_generation="hole"``) so that prompt plus
  generation fit ``n_positions``: the newest text is what the model continues.

Sampling parameters (``temperature``, ``top_k``, ``top_p``) are dropped when ``do_sample`` is false
(transformers warns about them otherwise), ``None`` values mean "the pipeline's default", and ``seed``
(not a generation argument) seeds the sampler for a reproducible answer.
"""

from __future__ import annotations

from typing import Any

#: sampling-only generation parameters: passed on only when sampling
SAMPLING_PARAMS = ("temperature", "top_k", "top_p")


def fit_generation(params: dict[str, Any] | None, n_positions: int, default_new_tokens: int) -> dict[str, Any]:
    """The pipeline arguments of one request: ``params`` without ``None`` values, ``max_new_tokens``
    in ``[1, n_positions - 1]`` (``default_new_tokens`` when not given), the prompt cut from the left."""
    out = {k: v for k, v in (params or {}).items() if v is not None}
    wanted = int(out.get("max_new_tokens", default_new_tokens))
    out["max_new_tokens"] = max(1, min(wanted, n_positions - 1))
    if not out.get("do_sample", True):
        for key in SAMPLING_PARAMS:
            out.pop(key, None)
    out["handle_long_generation"] = "hole"  # keep the last n_positions - max_new_tokens prompt tokens
    return out


def context_length(model: Any) -> int:
    """The number of positions the model has (GPT-2's ``n_positions``; other models' name for it)."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 1:
            return value
    raise ValueError(f"{type(model).__name__}: its config names no context length (n_positions)")


def default_new_tokens(n_positions: int) -> int:
    """The ``max_new_tokens`` of a request that gives none: 64, or a quarter of a small context."""
    return max(1, min(64, n_positions // 4))


class FittedTextGeneration:
    """MLflow's transformers pyfunc model with :func:`fit_generation` applied to each request's params."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        pipe = inner.pipeline
        self.n_positions = context_length(pipe.model)
        # the 'hole' cut measures the prompt against the tokenizer's limit: make it the model's context
        pipe.tokenizer.model_max_length = self.n_positions

    def get_raw_model(self) -> Any:
        return self._inner.get_raw_model()

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        fitted = fit_generation(params, self.n_positions, default_new_tokens(self.n_positions))
        seed = fitted.pop("seed", None)
        if seed is not None:
            from transformers import set_seed

            set_seed(int(seed))
        return self._inner.predict(data, fitted)


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> FittedTextGeneration:
    """MLflow's pyfunc entry point (``loader_module: cgpt_textgen`` in the model's MLmodel)."""
    from mlflow.transformers import _load_pyfunc as load_transformers_pyfunc

    return FittedTextGeneration(load_transformers_pyfunc(path, model_config))
