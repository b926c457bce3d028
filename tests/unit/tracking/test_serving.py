"""The logged model serves: its params schema, the context fitting of its pyfunc loader, its licence, and
that ``mlflow.transformers.load_model`` still gives the plain pipeline (a real sqlite MLflow store)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_export import log_tiny_model, tiny_export

from cgpt.tracking.cgpt_textgen import default_new_tokens, fit_generation
from cgpt.tracking.serving import LOADER_MODULE, generation_signature


def test_signature_declares_the_generation_params_with_the_served_defaults():
    sig = generation_signature(256)
    assert [c.type.name for c in sig.inputs.inputs] == ["string"]
    assert [c.type.name for c in sig.outputs.inputs] == ["string"]
    params = {p.name: (p.dtype.name, p.default) for p in sig.params.params}
    assert params == {
        "max_new_tokens": ("long", 64),
        "do_sample": ("boolean", True),
        "temperature": ("double", 0.7),
        "top_k": ("long", 50),
        "top_p": ("double", 1.0),
        "repetition_penalty": ("double", 1.0),
        "no_repeat_ngram_size": ("long", 0),
        "return_full_text": ("boolean", True),
        "seed": ("long", None),
    }
    # a small context asks for a quarter of it by default
    assert {p.name: p.default for p in generation_signature(32).params.params}["max_new_tokens"] == 8
    assert default_new_tokens(2) == 1


def test_fit_generation_clamps_new_tokens_and_cuts_the_prompt_from_the_left():
    fitted = fit_generation({"max_new_tokens": 1000, "do_sample": True, "temperature": 0.5}, 256, 64)
    assert fitted == {"max_new_tokens": 255, "do_sample": True, "temperature": 0.5, "handle_long_generation": "hole"}
    assert fit_generation({"max_new_tokens": 0}, 256, 64)["max_new_tokens"] == 1
    assert fit_generation(None, 256, 64) == {"max_new_tokens": 64, "handle_long_generation": "hole"}
    # greedy: the sampling knobs (which transformers warns about) are dropped; None means "the default"
    greedy = fit_generation({"do_sample": False, "temperature": 0.7, "top_k": 50, "top_p": 1.0, "seed": None}, 64, 8)
    assert greedy == {"do_sample": False, "max_new_tokens": 8, "handle_long_generation": "hole"}


@pytest.mark.slow
def test_logged_model_answers_within_its_context_and_carries_its_licence(tmp_path: Path):
    import mlflow

    folder = tiny_export(tmp_path / "export", n_positions=32)
    uri = log_tiny_model(tmp_path / "store", folder, license_text="Apache text\n")
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/cgpt/1")
    assert model.metadata.flavors["python_function"]["loader_module"] == LOADER_MODULE
    long_prompt = "Hello world, hello there. " * 40  # ~240 tokens, far past the 32 positions
    out = model.predict([long_prompt], params={"max_new_tokens": 1000, "do_sample": False})
    assert len(out) == 1 and out[0].startswith(long_prompt) and len(out[0]) > len(long_prompt)
    # return_full_text=False: only the continuation; seed makes a sampled answer reproducible
    a = model.predict("Generative AI is", params={"max_new_tokens": 5, "seed": 3, "return_full_text": False})
    b = model.predict("Generative AI is", params={"max_new_tokens": 5, "seed": 3, "return_full_text": False})
    assert a == b and a[0] and not a[0].startswith("Generative")
    local = Path(mlflow.artifacts.download_artifacts("models:/cgpt/1"))
    assert (local / "LICENSE.txt").read_text() == "Apache text\n"
    assert (local / "code" / f"{LOADER_MODULE}.py").is_file()
    # the transformers flavor is unchanged: load_model gives the plain pipeline
    pipe = mlflow.transformers.load_model("models:/cgpt/1")
    assert type(pipe).__name__ == "TextGenerationPipeline"
