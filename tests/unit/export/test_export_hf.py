"""Export to / import from Hugging Face GPT2LMHeadModel: transformers loads the real folder offline,
its logits and greedy generations match cgpt's, and the model card's quickstart runs unchanged."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from cgpt.core.errors import CgptError
from cgpt.export.hf import export_hf, hf_config, import_hf, import_hf_to_checkpoint, to_hf_state_dict
from cgpt.model.gpt import GPT
from cgpt.presets import ModelConfig, get_preset
from cgpt.train.checkpoint import load_checkpoint

transformers = pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline  # noqa: E402

EOS = "<|endoftext|>"
TEXT = ["Generative AI is a field of machine learning. Hello world, hello there, general kenobi."] * 20


def _tiny_tokenizer(tmp: Path) -> tuple[Path, int, int]:
    """A byte-level BPE trained here (no shared/ needed): (tokenizer.json, vocab size, eos id)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(TEXT, trainer=trainer)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    path = tmp / "tokenizer.json"
    tok.save(str(path))
    return path, tok.get_vocab_size(), tok.token_to_id(EOS)


def _cfg(par: str, vocab: int, **kw) -> ModelConfig:
    cfg = ModelConfig(n_layer=2, d_model=64, n_head=4, d_ffn=192, vocab_size=vocab, n_positions=96, **kw)
    if par == "mup":
        cfg = replace(cfg, parameterization="mup", init_std=0.08, embeddings_scale=10.0, mup_base_width=16)
    return cfg


def _random_model(cfg: ModelConfig, seed: int = 0) -> GPT:
    """Init weights, plus biases and LayerNorm parameters moved off their 0/1 init so mistakes show."""
    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def tiny_tok(tmp_path_factory) -> tuple[Path, int, int]:
    return _tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module", params=["sp", "mup"])
def exported(request, tiny_tok, tmp_path_factory):
    tj, vocab, eos = tiny_tok
    cfg = _cfg(request.param, vocab)
    model = _random_model(cfg)
    out = export_hf(model.state_dict(), cfg, tmp_path_factory.mktemp("x") / "hf", tokenizer_json=tj, eos_token_id=eos)
    return cfg, model, out, eos


def test_folder_layout_and_config(exported):
    cfg, _, out, eos = exported
    names = {p.name for p in out.iterdir()}
    assert names == {
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "vocab.json", "merges.txt",
    }  # fmt: skip
    c = json.loads((out / "config.json").read_text())
    assert c["model_type"] == "gpt2" and c["architectures"] == ["GPT2LMHeadModel"]
    assert c["activation_function"] == "gelu"
    assert (c["n_embd"], c["n_layer"], c["n_head"], c["n_inner"]) == (cfg.d_model, cfg.n_layer, cfg.n_head, cfg.d_ffn)
    assert c["n_positions"] == c["n_ctx"] == cfg.n_positions and c["vocab_size"] == cfg.vocab_size
    assert c["resid_pdrop"] == c["embd_pdrop"] == c["attn_pdrop"] == 0.0
    assert c["layer_norm_epsilon"] == 1e-5 and c["scale_attn_weights"] is True
    assert c["scale_attn_by_inverse_layer_idx"] is False and c["reorder_and_upcast_attn"] is False
    assert c["tie_word_embeddings"] is (not cfg.is_mup)
    assert c["bos_token_id"] == c["eos_token_id"] == eos
    # every GPT2Config field is written explicitly
    from transformers import GPT2Config

    assert set(GPT2Config.__annotations__) - set(c) == set()
    hf_cfg = transformers.AutoConfig.from_pretrained(out)
    assert hf_cfg.activation_function == "gelu" and hf_cfg.n_inner == cfg.d_ffn
    w = load_file(str(out / "model.safetensors"))
    assert w["transformer.h.0.attn.c_attn.weight"].shape == (cfg.d_model, 3 * cfg.d_model)  # Conv1D [in, out]
    assert w["transformer.h.0.mlp.c_fc.weight"].shape == (cfg.d_model, cfg.d_ffn)
    assert w["transformer.wte.weight"].shape == (cfg.vocab_size, cfg.d_model)
    assert ("lm_head.weight" in w) is cfg.is_mup
    assert all(t.dtype == torch.float32 for t in w.values())


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_logits_parity(exported, attn):
    cfg, model, out, _ = exported
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation=attn).eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    torch.manual_seed(1)
    x = torch.randint(0, cfg.vocab_size, (3, cfg.n_positions))
    with torch.no_grad():
        diff = (hf(x).logits - model(x)).abs().max().item()
    assert diff <= 1e-4


def test_greedy_generation_identical(exported):
    cfg, model, out, eos = exported
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    torch.manual_seed(2)
    for _ in range(2):
        prompt = torch.randint(0, cfg.vocab_size, (1, 7))
        ours = model.generate(prompt, max_new_tokens=20, eos_token_id=eos)
        theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=20)
        assert ours.tolist() == theirs.tolist()


def test_model_card_quickstart(exported):
    """The Cerebras-GPT model card's code, unchanged, on the exported folder."""
    _, _, out, _ = exported
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    text = "Generative AI is "

    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
    generated_text = pipe(text, max_length=50, do_sample=False, no_repeat_ngram_size=2)[0]
    assert generated_text["generated_text"].startswith(text)

    inputs = tokenizer(text, return_tensors="pt")
    outputs = model.generate(**inputs, num_beams=5, max_new_tokens=50, early_stopping=True, no_repeat_ngram_size=2)
    text_output = tokenizer.batch_decode(outputs, skip_special_tokens=True)
    assert text_output[0].startswith(text)
    assert outputs.shape[1] <= inputs["input_ids"].shape[1] + 50


def test_tokenizer_files_match_tokenizers(exported, tiny_tok):
    _, _, out, eos = exported
    ref = Tokenizer.from_file(str(tiny_tok[0]))
    assert (out / "tokenizer.json").read_bytes() == tiny_tok[0].read_bytes()
    fast = AutoTokenizer.from_pretrained(out)
    assert fast.eos_token == fast.bos_token == fast.unk_token == EOS and fast.eos_token_id == eos
    assert fast.model_max_length == 96
    s = "Hello world, general kenobi!<|endoftext|> AI"
    assert fast(s)["input_ids"] == ref.encode(s).ids
    # vocab.json + merges.txt alone (the slow GPT-2 layout) give the same encoding
    from transformers import GPT2Tokenizer

    slow = GPT2Tokenizer(vocab=str(out / "vocab.json"), merges=str(out / "merges.txt"))
    assert slow(s)["input_ids"] == ref.encode(s).ids


def test_gpt2_vocabulary_export(gpt2_tokenizer_dir, tmp_path):
    """With the real GPT-2 vocab: the card's prompt tokenizes to the documented ids."""
    tok = Tokenizer(
        models.BPE.from_file(str(gpt2_tokenizer_dir / "vocab.json"), str(gpt2_tokenizer_dir / "merges.txt"))
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([EOS])
    tok.save(str(tmp_path / "tokenizer.json"))
    cfg = ModelConfig(n_layer=1, d_model=32, n_head=2, d_ffn=64, n_positions=64)  # vocab 50257
    assert tok.get_vocab_size() == cfg.vocab_size == 50257
    out = export_hf(
        _random_model(cfg).state_dict(),
        cfg,
        tmp_path / "hf",
        tokenizer_json=tmp_path / "tokenizer.json",
        eos_token_id=50256,
    )
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer("Generative AI is ")["input_ids"] == [8645, 876, 9552, 318, 220]
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert tokenizer("a<|endoftext|>b")["input_ids"] == [64, 50256, 65]
    assert tokenizer.eos_token_id == 50256
    model = AutoModelForCausalLM.from_pretrained(out)
    outputs = model.generate(**tokenizer("Generative AI is ", return_tensors="pt"), num_beams=2, max_new_tokens=5)
    assert outputs.shape == (1, 10)


def test_sp_round_trip_identical(tiny_tok, tmp_path):
    tj, vocab, eos = tiny_tok
    cfg = _cfg("sp", vocab, output_init_std=0.0025)
    model = _random_model(cfg, seed=3)
    a = export_hf(model.state_dict(), cfg, tmp_path / "a", tokenizer_json=tj, eos_token_id=eos)
    cfg2, state = import_hf(a)
    assert cfg2 == cfg
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v), k
    b = export_hf(state, cfg2, tmp_path / "b", tokenizer_json=tj, eos_token_id=eos)
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for name in ("config.json", "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_mup_fold_and_unfold(tiny_tok, tmp_path):
    """muP folds into plain GPT-2 weights; cgpt's import unfolds its own export back to muP."""
    tj, vocab, eos = tiny_tok
    cfg = _cfg("mup", vocab)
    model = _random_model(cfg, seed=4)
    out = export_hf(model.state_dict(), cfg, tmp_path / "hf", tokenizer_json=tj, eos_token_id=eos)
    w = load_file(str(out / "model.safetensors"))
    sd = model.state_dict()
    torch.testing.assert_close(w["transformer.wte.weight"], sd["wte.weight"] * 10)
    torch.testing.assert_close(w["transformer.wpe.weight"], sd["wpe.weight"] * 10)
    torch.testing.assert_close(w["lm_head.weight"], sd["wte.weight"] / cfg.width_mult)
    d, r = cfg.d_model, cfg.d_head**0.5
    qkv = sd["h.1.attn.c_attn.weight"]
    torch.testing.assert_close(w["transformer.h.1.attn.c_attn.weight"][:, d : 2 * d], qkv[d : 2 * d].t() / r)
    torch.testing.assert_close(w["transformer.h.1.attn.c_attn.weight"][:, :d], qkv[:d].t())  # Q untouched
    torch.testing.assert_close(
        w["transformer.h.1.attn.c_attn.bias"][d : 2 * d], sd["h.1.attn.c_attn.bias"][d : 2 * d] / r
    )
    cfg2, state = import_hf(out)
    assert cfg2 == cfg and cfg2.is_mup
    for k, v in sd.items():
        torch.testing.assert_close(state[k], v, rtol=1e-6, atol=1e-7)
    back = GPT(cfg2).eval()
    back.load_state_dict(state)
    x = torch.randint(0, vocab, (2, 33))
    with torch.no_grad():
        assert (back(x) - model(x)).abs().max().item() <= 1e-5


def _save_hf_variants(tmp_path: Path, cfg: ModelConfig, model: GPT, eos: int) -> dict[str, Path]:
    """The same SP model in the layouts found in the wild."""
    base = export_hf(model.state_dict(), cfg, tmp_path / "safetensors", tokenizer_json=None, eos_token_id=eos)
    config = (base / "config.json").read_text()
    w = load_file(str(base / "model.safetensors"))
    variants = {"safetensors": base}

    # pytorch_model.bin: no "transformer." prefix, legacy attn.bias/masked_bias buffers, explicit lm_head
    legacy = {k.removeprefix("transformer."): v for k, v in w.items()}
    for i in range(cfg.n_layer):
        legacy[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, cfg.n_positions, cfg.n_positions, dtype=torch.uint8))
        legacy[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    legacy["lm_head.weight"] = w["transformer.wte.weight"].clone()
    d = tmp_path / "bin"
    d.mkdir()
    (d / "config.json").write_text(config)
    torch.save(legacy, d / "pytorch_model.bin")
    variants["bin"] = d

    keys = sorted(w)
    halves = {1: keys[: len(keys) // 2], 2: keys[len(keys) // 2 :]}
    for kind, name, ext in (("sharded-safetensors", "model", "safetensors"), ("sharded-bin", "pytorch_model", "bin")):
        d = tmp_path / kind
        d.mkdir()
        (d / "config.json").write_text(config)
        weight_map = {}
        for i, ks in halves.items():
            fname = f"{name}-0000{i}-of-00002.{ext}"
            part = {k: w[k].clone() for k in ks}
            save_file(part, str(d / fname)) if ext == "safetensors" else torch.save(part, d / fname)
            weight_map.update(dict.fromkeys(ks, fname))
        index = f"{name}.{ext}.index.json"
        (d / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        variants[kind] = d
    return variants


def test_import_layouts(tiny_tok, tmp_path):
    _, vocab, eos = tiny_tok
    cfg = _cfg("sp", vocab)
    model = _random_model(cfg, seed=5)
    for kind, d in _save_hf_variants(tmp_path, cfg, model, eos).items():
        cfg2, state = import_hf(d)
        assert cfg2 == cfg, kind
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items()), kind


def test_import_a_transformers_saved_model(tmp_path):
    """A folder written by transformers' own save_pretrained (sharded) imports and matches it."""
    from transformers import GPT2LMHeadModel

    cfg = _cfg("sp", 300)
    torch.manual_seed(6)
    hf = GPT2LMHeadModel(hf_config(cfg, eos_token_id=0)).eval()
    hf.save_pretrained(tmp_path / "hf", max_shard_size="100KB")
    assert list((tmp_path / "hf").glob("model-*-of-*.safetensors"))
    cfg2, state = import_hf(tmp_path / "hf")
    model = GPT(cfg2).eval()
    model.load_state_dict(state)
    x = torch.randint(0, 300, (2, 20))
    with torch.no_grad():
        assert (hf(x).logits - model(x)).abs().max().item() <= 1e-4


def test_import_to_checkpoint(tiny_tok, tmp_path):
    tj, vocab, eos = tiny_tok
    cfg = _cfg("sp", vocab)
    model = _random_model(cfg, seed=7)
    src = export_hf(model.state_dict(), cfg, tmp_path / "hf", tokenizer_json=tj, eos_token_id=eos)
    path = import_hf_to_checkpoint(src, tmp_path / "ckpt")
    assert path == tmp_path / "ckpt" / "step-00000000"
    ck = load_checkpoint(path)
    assert ck.step == 0 and ck.model_config == cfg and ck.optimizer_state is None
    assert ck.state["imported_from"] == str(src.resolve())
    assert all(torch.equal(ck.model_state[k], v) for k, v in model.state_dict().items())
    assert (tmp_path / "ckpt" / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()


def _write_config(d: Path, **overrides) -> None:
    c = json.loads((d / "config.json").read_text())
    c.update(overrides)
    (d / "config.json").write_text(json.dumps(c))


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("nothing", "not a folder"),
        ("no_config", "no config.json"),
        ("bad_json", "invalid JSON"),
        ("no_weights", "no weights found"),
        ("gelu_new", "exact erf GELU"),
        ("model_type", "expected 'gpt2'"),
        ("shape", "has shape"),
        ("untied_head", "untied lm_head.weight differs"),
        ("missing_shard", "shard"),
    ],
)
def test_import_errors_are_one_line(tiny_tok, tmp_path, breakage, message):
    _, vocab, eos = tiny_tok
    cfg = _cfg("sp", vocab)
    model = _random_model(cfg)
    d = export_hf(model.state_dict(), cfg, tmp_path / "hf", tokenizer_json=None, eos_token_id=eos)
    meta_free = json.loads((d / "config.json").read_text())
    meta_free.pop("cgpt")
    (d / "config.json").write_text(json.dumps(meta_free))  # a foreign folder: no cgpt block
    if breakage == "nothing":
        d = tmp_path / "absent"
    elif breakage == "no_config":
        (d / "config.json").unlink()
    elif breakage == "bad_json":
        (d / "config.json").write_text("{\n oops")
    elif breakage == "no_weights":
        (d / "model.safetensors").unlink()
    elif breakage == "gelu_new":
        _write_config(d, activation_function="gelu_new")
    elif breakage == "model_type":
        _write_config(d, model_type="llama")
    elif breakage == "shape":
        _write_config(d, n_inner=2 * cfg.d_ffn)
    elif breakage == "untied_head":
        w = load_file(str(d / "model.safetensors"))
        w["lm_head.weight"] = w["transformer.wte.weight"] * 0.5
        save_file(w, str(d / "model.safetensors"))
        _write_config(d, tie_word_embeddings=False)
    elif breakage == "missing_shard":
        (d / "model.safetensors").rename(d / "model-00001-of-00002.safetensors")
        (d / "model.safetensors.index.json").write_text(
            json.dumps(
                {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
            )
        )
    with pytest.raises(CgptError) as exc:
        import_hf(d)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_export_errors_and_atomicity(tiny_tok, tmp_path):
    tj, vocab, eos = tiny_tok
    cfg = _cfg("sp", vocab)
    sd = _random_model(cfg).state_dict()
    out = tmp_path / "hf"
    with pytest.raises(CgptError, match="outside the vocabulary"):
        export_hf(sd, cfg, out, tokenizer_json=tj, eos_token_id=vocab)
    with pytest.raises(CgptError, match="tokenizer.json not found"):
        export_hf(sd, cfg, out, tokenizer_json=tmp_path / "missing.json", eos_token_id=eos)
    with pytest.raises(CgptError, match="missing 2 tensors"):
        export_hf(
            {k: v for k, v in sd.items() if not k.startswith("ln_f")}, cfg, out, tokenizer_json=tj, eos_token_id=eos
        )
    assert not out.exists() and not list(tmp_path.glob(".hf*"))
    export_hf(sd, cfg, out, tokenizer_json=tj, eos_token_id=eos)
    export_hf(sd, cfg, out, tokenizer_json=None, eos_token_id=eos)  # replaces the folder as a whole
    assert not (out / "tokenizer.json").exists() and (out / "model.safetensors").is_file()
    # state dicts of compiled / DDP-wrapped models export the same tensors
    wrapped = {"_orig_mod.module." + k: v for k, v in sd.items()}
    assert all(
        torch.equal(a, b) for a, b in zip(to_hf_state_dict(wrapped, cfg).values(), to_hf_state_dict(sd, cfg).values())
    )


@pytest.mark.parametrize("par", ["sp", "mup"])
def test_build_hf_model_in_memory(par):
    """The benchmark's in-memory HF twin: same function, training-mode loss and gradients agree."""
    from cgpt.export.hf import build_hf_model

    cfg = _cfg(par, 211)
    model = _random_model(cfg, seed=9).train()
    hf = build_hf_model(model.state_dict(), cfg).train()
    assert (hf.lm_head.weight is hf.transformer.wte.weight) is (par == "sp")
    x = torch.randint(0, 211, (2, 24))
    y = x[:, 1:].clone()
    y[:, -1] = -100  # HF scores T-1 targets
    ours = model(x[:, :-1], y)[1]
    theirs = hf(input_ids=x[:, :-1], labels=x[:, :-1]).loss
    assert abs(ours.item() - theirs.item()) < 1e-5
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(
        hf.transformer.h[1].mlp.c_fc.weight.grad, model.h[1].mlp.c_fc.weight.grad.t(), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("par", ["sp", "mup"])
def test_bf16_export(tiny_tok, tmp_path, par):
    tj, vocab, eos = tiny_tok
    cfg = _cfg(par, vocab)
    model = _random_model(cfg)
    out = export_hf(model.state_dict(), cfg, tmp_path / "hf", tokenizer_json=tj, eos_token_id=eos, dtype=torch.bfloat16)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert all(t.dtype == torch.bfloat16 for t in load_file(str(out / "model.safetensors")).values())
    hf = AutoModelForCausalLM.from_pretrained(out)
    assert hf.dtype == torch.bfloat16
    cfg2, state = import_hf(out)  # back to fp32, equal to the original up to bf16 rounding
    assert cfg2 == cfg
    for k, v in model.state_dict().items():
        torch.testing.assert_close(state[k], v, rtol=1e-2, atol=1e-2 * float(v.abs().max()))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cerebras-111m", "cerebras-111m-mup"])
def test_111m_parity(name, tmp_path):
    """The real 111M shape (random weights, fp32): HF logits within 1e-4 of cgpt's on 32 tokens."""
    cfg = get_preset(name).model
    model = _random_model(cfg, seed=8)
    out = export_hf(model.state_dict(), cfg, tmp_path / "hf", tokenizer_json=None, eos_token_id=50256)
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="sdpa").eval()
    x = torch.randint(0, cfg.vocab_size, (1, 32))
    with torch.no_grad():
        assert (hf(x).logits - model(x)).abs().max().item() <= 1e-4
