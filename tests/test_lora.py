"""LoRA adapters through peft: targets and rank, save/load/unload identity, switching, fusing, the fast path, pushes,
and a tiny training run in which the loss goes down and only adapter parameters change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from model_helpers import DiTARModelTester
from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline
from test_model_cards import RecordingApi

from modeling_ditar import DiTARForConditionalGeneration, DiTARPipeline
from modeling_ditar.lora import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    default_lora_config,
    lora_target_modules,
    push_adapter_to_hub,
)

pytest.importorskip("peft")


def randomize_adapter(model, seed: int, scale: float = 0.2):
    """LoRA B starts at zero (the adapter is a no-op); random values make it change the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


def audio(pipe, **overrides):
    return pipe(**get_dummy_inputs(**overrides)).audios[0]


def lora_linears(model):
    from peft.tuners.lora import LoraLayer

    return [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def test_targets_and_rank():
    model = DiTARModelTester().get_model()
    model.add_adapter(default_lora_config(rank=4, targets="backbone+locdit"), adapter_name="a")
    names = lora_linears(model)
    # 2 backbone layers x q/k/v/o + 2 LocDiT blocks x (4 attention + 2 feed-forward linears)
    assert len(names) == 2 * 4 + 2 * 6
    assert all(name.startswith(("language_model.", "locdit.transformer.blocks.")) for name in names)
    assert model.language_model.layers[0].self_attn.q_proj.lora_A["a"].weight.shape == (4, 32)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    summary = model.adapter_summary()
    assert summary["layers"] == 20 and 0 < summary["fraction"] < 1
    assert summary["size_mb"] == pytest.approx(summary["adapter_parameters"] * 4 / 1e6)
    mlp = DiTARModelTester().get_model()
    mlp.add_adapter(default_lora_config(rank=2, targets="backbone-mlp+encoder"))
    assert len(lora_linears(mlp)) == 2 * 3 + 1 * 6
    assert lora_target_modules(["q_proj"]) == ["q_proj"]
    everything = DiTARModelTester().get_model()
    everything.add_adapter(default_lora_config())  # the default: every group but the heads, rank 8
    # 2 backbone layers x (4 attention + 3 MLP) + 2 LocDiT blocks x 6 + 1 encoder block x 6 + 5 in/out projections
    assert len(lora_linears(everything)) == 2 * 7 + 2 * 6 + 1 * 6 + 5
    assert lora_target_modules("all") == lora_target_modules("backbone+backbone-mlp+locdit+encoder+io+heads")
    with pytest.raises(ValueError, match="groups of"):
        lora_target_modules("backbone+decoder")
    edges = DiTARModelTester().get_model()  # the projections where features enter and leave, and the heads
    edges.add_adapter(default_lora_config(rank=2, targets="io+heads"))
    assert sorted(lora_linears(edges)) == [
        "aggregation_encoder.in_proj",
        "aggregation_encoder.out_proj",
        "locdit.cond_proj",
        "locdit.in_proj",
        "locdit.out_proj",
        "stop_head",  # and ctc_head, in a model trained with a CTC loss
    ]


def test_save_load_unload_is_bit_identical(tmp_path):
    pipe = get_dummy_pipeline()
    base = audio(pipe)
    model = pipe.model
    model.add_adapter(default_lora_config(rank=4), adapter_name="voice")
    randomize_adapter(model, seed=1)
    adapted = audio(pipe)
    assert not torch.equal(torch.as_tensor(adapted), torch.as_tensor(base))
    folder = model.save_adapter(tmp_path / "voice")
    assert {p.name for p in folder.iterdir()} == {ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md"}
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    assert "library_name: peft" in (folder / "README.md").read_text()

    with pytest.raises(ValueError, match="save_adapter"):
        pipe.save_pretrained(tmp_path / "pipe")  # LoRA layers would be saved under names nothing loads
    pipe.unload_lora_weights()
    assert lora_linears(model) == [] and not hasattr(model, "peft_config")  # none left: as on a transformers model
    with torch.no_grad():
        assert model.locdit.transformer.use_fast_path()
    assert torch.equal(torch.as_tensor(audio(pipe)), torch.as_tensor(base))  # bit for bit

    fresh = get_dummy_pipeline()
    fresh.load_lora_weights(folder, adapter_name="voice")
    assert fresh.get_active_adapters() == ["voice"]
    torch.testing.assert_close(torch.as_tensor(audio(fresh)), torch.as_tensor(adapted), rtol=0, atol=0)
    fresh.disable_lora()
    assert torch.equal(torch.as_tensor(audio(fresh)), torch.as_tensor(base))
    fresh.enable_lora()
    assert torch.equal(torch.as_tensor(audio(fresh)), torch.as_tensor(adapted))


def test_switch_between_two_adapters_and_delete(tmp_path):
    pipe = get_dummy_pipeline()
    base = torch.as_tensor(audio(pipe))
    outputs = {}
    for seed, name in ((1, "a"), (2, "b")):
        model = get_dummy_pipeline().model
        model.add_adapter(default_lora_config(rank=4, targets="locdit"), adapter_name=name)
        randomize_adapter(model, seed)
        model.save_adapter(tmp_path / name)
    for name in ("a", "b"):
        pipe.load_lora_weights(tmp_path / name, adapter_name=name)
        outputs[name] = torch.as_tensor(audio(pipe))
    assert pipe.get_list_adapters() == {"model": ["a", "b"]}
    assert not torch.equal(outputs["a"], outputs["b"])
    pipe.set_adapters("a")
    assert torch.equal(torch.as_tensor(audio(pipe)), outputs["a"])
    pipe.set_adapters("b")
    assert torch.equal(torch.as_tensor(audio(pipe)), outputs["b"])
    with pytest.raises(ValueError, match="No adapter named"):
        pipe.set_adapters("c")
    pipe.delete_adapters("b")
    assert pipe.get_active_adapters() == ["a"]
    assert torch.equal(torch.as_tensor(audio(pipe)), outputs["a"])
    pipe.delete_adapters("a")
    assert torch.equal(torch.as_tensor(audio(pipe)), base)


def test_fuse_lora_matches_unfused_and_restores_the_fast_path(tmp_path):
    pipe = get_dummy_pipeline()
    model = pipe.model
    model.add_adapter(default_lora_config(rank=4, targets="backbone+backbone-mlp+locdit+encoder"), adapter_name="v")
    randomize_adapter(model, seed=3, scale=0.1)
    with torch.no_grad():
        assert not model.locdit.transformer.use_fast_path()  # LoRA-wrapped linears: the diffusers path
    unfused = torch.as_tensor(audio(pipe))
    pipe.fuse_lora()
    assert lora_linears(model) == []
    with torch.no_grad():
        assert model.locdit.transformer.use_fast_path()
    torch.testing.assert_close(torch.as_tensor(audio(pipe)), unfused, rtol=1e-4, atol=1e-4)
    pipe.save_pretrained(tmp_path / "fused")  # fused: a plain pipeline with the adapter built in
    reloaded = DiTARPipeline.from_pretrained(tmp_path / "fused")
    reloaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(torch.as_tensor(audio(reloaded)), unfused, rtol=1e-4, atol=1e-4)
    pipe.unfuse_lora()
    assert torch.equal(torch.as_tensor(audio(pipe)), unfused)
    pipe.fuse_lora()
    pipe.unload_lora_weights()  # fused or not, unloading gives the base model back
    assert torch.equal(torch.as_tensor(audio(pipe)), torch.as_tensor(audio(get_dummy_pipeline())))


def test_fusing_into_bfloat16_matmul_layers_uses_the_fused_weights():
    """Fusing writes the adapter into the float32 weights; the bfloat16 copies the layers multiply with must follow,
    or the fused model would speak with the base weights."""
    pipe = get_dummy_pipeline()
    model = pipe.model
    with torch.no_grad():  # the dummy LocDiT's zero output projection would hide every weight change
        model.locdit.out_proj.weight.normal_(0.0, 0.05)
    model.set_matmul_dtype(torch.bfloat16)
    base = torch.as_tensor(audio(pipe))  # the base copies are made here
    model.add_adapter(default_lora_config(rank=4, targets="backbone+backbone-mlp+locdit+encoder"), adapter_name="v")
    randomize_adapter(model, seed=3, scale=0.1)
    unfused = torch.as_tensor(audio(pipe))
    pipe.fuse_lora()
    with torch.no_grad():
        assert model.locdit.transformer.use_fast_path() and model.matmul_dtype == torch.bfloat16
    fused = torch.as_tensor(audio(pipe))
    assert (fused - unfused).abs().max() < 0.5 * (base - unfused).abs().max()
    pipe.unload_lora_weights()
    assert torch.equal(torch.as_tensor(audio(pipe)), base)


def test_dora_adapter_fuses_saves_and_loads(tmp_path):
    # DoRA rescales each merged weight row, so fusing must follow peft's merge rule, not add B @ A
    pipe = get_dummy_pipeline()
    base = torch.as_tensor(audio(pipe))
    pipe.model.add_adapter(default_lora_config(rank=4, targets="all", use_dora=True), adapter_name="d")
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, parameter in pipe.model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    unfused = torch.as_tensor(audio(pipe))
    assert not torch.allclose(unfused, base)
    pipe.model.save_adapter(tmp_path / "dora")
    assert any("magnitude" in key for key in pipe.model.get_adapter_state_dict("d"))
    pipe.fuse_lora()
    torch.testing.assert_close(torch.as_tensor(audio(pipe)), unfused, rtol=1e-4, atol=1e-4)
    pipe.unload_lora_weights()
    assert torch.equal(torch.as_tensor(audio(pipe)), base)
    pipe.load_lora_weights(tmp_path / "dora", adapter_name="again")
    assert torch.equal(torch.as_tensor(audio(pipe)), unfused)


def _randomize_norm_adapter(model, adapter: str, seed: int):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if f"lora_A.{adapter}." in name or f"lora_B.{adapter}." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
            elif f"modules_to_save.{adapter}." in name:  # the adapter's own copy of a normalisation layer
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)


def test_adapters_that_train_the_norms_save_load_switch_fuse_and_unload(tmp_path):
    pipe = get_dummy_pipeline()
    base = torch.as_tensor(audio(pipe))
    model = pipe.model
    model.add_adapter(default_lora_config(rank=2, train_norms=True), adapter_name="a")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("norm1.modules_to_save.a" in n for n in trainable) and any("input_layernorm" in n for n in trainable)
    summary = model.adapter_summary("a")
    norms = sum(p.numel() for n, p in model.named_parameters() if "modules_to_save.a." in n)
    assert norms > 0 and summary["adapter_parameters"] == norms + sum(
        p.numel() for n, p in model.named_parameters() if "lora_" in n
    )
    _randomize_norm_adapter(model, "a", seed=1)
    with_a = torch.as_tensor(audio(pipe))
    model.save_adapter(tmp_path / "a")
    model.add_adapter(default_lora_config(rank=2, train_norms=True), adapter_name="b")
    _randomize_norm_adapter(model, "b", seed=2)
    with_b = torch.as_tensor(audio(pipe))
    assert not torch.allclose(with_a, with_b) and not torch.allclose(with_a, base)
    pipe.set_adapters("a")
    assert torch.equal(torch.as_tensor(audio(pipe)), with_a)
    with pytest.raises(ValueError, match="only one of them can be active"):
        pipe.set_adapters(["a", "b"])
    pipe.disable_lora()
    assert torch.equal(torch.as_tensor(audio(pipe)), base)
    pipe.enable_lora()
    pipe.fuse_lora()
    torch.testing.assert_close(torch.as_tensor(audio(pipe)), with_a, rtol=1e-4, atol=1e-4)
    pipe.unfuse_lora()
    pipe.delete_adapters("a")
    assert torch.equal(torch.as_tensor(audio(pipe)), with_b)
    pipe.unload_lora_weights()
    assert torch.equal(torch.as_tensor(audio(pipe)), base)
    assert all(type(m).__name__ != "ModulesToSaveWrapper" for m in model.modules())

    fresh = get_dummy_pipeline()
    fresh.load_lora_weights(tmp_path / "a", adapter_name="again")
    assert torch.equal(torch.as_tensor(audio(fresh)), with_a)
    assert fresh.model.merge_and_unload() is fresh.model  # as peft's: `model = model.merge_and_unload()` works
    fresh.save_pretrained(tmp_path / "merged")  # a plain pipeline with the adapter, norms included, built in
    merged = DiTARPipeline.from_pretrained(tmp_path / "merged")
    merged.set_progress_bar_config(disable=True)
    torch.testing.assert_close(torch.as_tensor(audio(merged)), with_a, rtol=1e-4, atol=1e-4)


def test_push_adapter_to_hub_with_card(tmp_path):
    model = DiTARModelTester().get_model()
    model.add_adapter(default_lora_config(rank=2), adapter_name="me")
    api = RecordingApi()
    info = push_adapter_to_hub(model, "org/my-voice", api=api, private=True)
    assert info.commit_url.endswith("/commit/0")
    assert api.calls[0] == ("create_repo", "org/my-voice", True, True)
    assert set(api.files) == {ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md"}
    card = ModelCard(api.files["README.md"].decode())
    assert card.data.library_name == "peft" and "lora" in card.data.tags


def test_tiny_lora_training_run_trains_only_the_adapter():
    tester = DiTARModelTester()
    model: DiTARForConditionalGeneration = tester.get_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.add_adapter(default_lora_config(rank=4, alpha=8), adapter_name="tune")
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    batch = tester.prepare_inputs(seed=0)
    losses = []
    for step in range(12):
        torch.manual_seed(step % 2)  # the diffusion times and noise of two alternating draws
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    assert sum(losses[-4:]) < sum(losses[:4])
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            continue
        original = name.replace(".base_layer", "")
        assert torch.equal(parameter, before[original]), name  # the base weights never moved
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in model.named_parameters() if "lora_B" in n)
    model.unload_adapters()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_candidate_ranking_takes_one_float_rate_for_every_row():
    """train.py's validation sample passes the prompt's speaking rate as a float; with `num_candidates` > 1 (the
    shipped default) the CTC ranking used to slice it like a per-row tensor and fail at the end of a fine-tuning run."""
    tester = DiTARModelTester(batch_size=1)
    model = tester.get_model(ctc_loss_weight=1.0, num_candidates=2)
    inputs = tester.prepare_generation_inputs()
    out = model.generate(
        **inputs, speech_position_rate=0.5, max_new_patches=3, generator=torch.Generator().manual_seed(0)
    )
    assert out.features.shape[0] == 1 and torch.isfinite(out.features).all()


def _saved_adapter(folder, seed: int = 1, **config_overrides):
    """An adapter of LoRA rank 4 on LoCDiT, with random weights, saved from a tiny model (with `config_overrides`)."""
    model = get_dummy_pipeline(**config_overrides).model
    model.add_adapter(default_lora_config(rank=4, targets="locdit"), adapter_name="voice")
    randomize_adapter(model, seed)
    return model.save_adapter(folder)


def _edited(folder, target, **config_changes):
    import shutil

    shutil.copytree(folder, target)
    config = json.loads((target / ADAPTER_CONFIG).read_text())
    config.update(config_changes)
    (target / ADAPTER_CONFIG).write_text(json.dumps(config))
    return target


def test_a_refused_adapter_leaves_the_pipeline_exactly_as_it_was(tmp_path):
    """A refused load used to leave the adapter's name registered and part of its weights in the layers: the audio
    changed and the name could not be loaded again."""
    good = _saved_adapter(tmp_path / "good")
    wide = _saved_adapter(tmp_path / "wide", locdit_hidden_size=48)  # a model of another size
    refused = [
        (wide, "does not fit this model .*output size 48 in the adapter, 32 here"),
        (_edited(good, tmp_path / "rank", r=8), "rank 4 in the adapter, r=8 in its config"),
        (_edited(good, tmp_path / "targets", target_modules=["no_such_layer"]), "its target_modules match no layer"),
    ]
    pipe = get_dummy_pipeline()
    base = torch.as_tensor(audio(pipe))
    for folder, message in refused:  # on a pipeline without adapters
        with pytest.raises(ValueError, match=message):
            pipe.load_lora_weights(folder, adapter_name="x")
        assert pipe.get_list_adapters() == {"model": []} and lora_linears(pipe.model) == []
        assert torch.equal(torch.as_tensor(audio(pipe)), base)
    pipe.load_lora_weights(good, adapter_name="a")
    adapted = torch.as_tensor(audio(pipe))
    for folder, message in refused:  # next to an active adapter, and next to a switched-off one
        for switched_off in (False, True):
            if switched_off:
                pipe.disable_lora()
            with pytest.raises(ValueError, match=message):
                pipe.load_lora_weights(folder, adapter_name="x")
            assert pipe.get_list_adapters() == {"model": ["a"]}
            assert pipe.get_active_adapters() == ([] if switched_off else ["a"])
            assert torch.equal(torch.as_tensor(audio(pipe)), base if switched_off else adapted)
            pipe.enable_lora()
    with pytest.raises(ValueError, match="without '.'"):
        pipe.load_lora_weights(good, adapter_name="a.b")
    with pytest.raises(ValueError, match="'a' already exists"):
        pipe.load_lora_weights(good, adapter_name="a")
    assert pipe.get_active_adapters() == ["a"] and torch.equal(torch.as_tensor(audio(pipe)), adapted)
    pipe.load_lora_weights(good, adapter_name="x")  # the refused name is free
    assert pipe.get_list_adapters() == {"model": ["a", "x"]}


def test_adapter_sources_and_settings_that_cannot_work_are_named(tmp_path):
    good = _saved_adapter(tmp_path / "good")
    pipe = get_dummy_pipeline()
    with pytest.raises(FileNotFoundError, match="nowhere is not a LoRA adapter folder \\(it does not exist\\)"):
        pipe.load_lora_weights(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="is not a LoRA adapter folder \\(it is a file\\)"):
        pipe.load_lora_weights(good / ADAPTER_CONFIG)
    with pytest.raises(OSError, match="'org/no-adapter' is not a folder here, and a LoRA adapter could not be fetched"):
        pipe.load_lora_weights("org/no-adapter")
    pipe.load_lora_weights(tmp_path, subfolder="good", adapter_name="sub")  # a local subfolder, as on the Hub
    pipe.delete_adapters("sub")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['weight_name'\\]"):
        pipe.load_lora_weights(good, weight_name="other.safetensors")  # was ignored: the default file was loaded
    broken = _edited(good, tmp_path / "broken")
    (broken / ADAPTER_WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="adapter_model.safetensors is truncated or not a safetensors file"):
        pipe.load_lora_weights(broken)
    (broken / ADAPTER_CONFIG).write_text("{not json")
    with pytest.raises(ValueError, match="adapter_config.json is not valid JSON"):
        pipe.load_lora_weights(broken)
    assert pipe.get_list_adapters() == {"model": []}

    pipe.load_lora_weights(good, adapter_name="a")
    adapted = torch.as_tensor(audio(pipe))
    for bad in (float("nan"), float("inf"), "0.5", True):
        with pytest.raises(ValueError, match="lora_scale must be a finite number"):
            pipe.fuse_lora(lora_scale=bad)
    for names in (["zzz"], "zzz", []):
        with pytest.raises(ValueError, match="No adapter named"):
            pipe.fuse_lora(adapter_names=names)  # a string was read letter by letter, and nothing was fused
    for names in (None, [], [None]):
        with pytest.raises(ValueError, match="Give an adapter name or a list of them"):
            pipe.set_adapters(names)
    pipe.fuse_lora(adapter_names="a")
    torch.testing.assert_close(torch.as_tensor(audio(pipe)), adapted)


def test_while_fused_the_adapter_controls_are_refused_instead_of_doing_nothing(tmp_path):
    """Fusing swaps the LoRA layers out: switching, disabling, deleting or saving adapters then changed the bookkeeping
    (and wrote an empty adapter) while the fused adapter went on speaking."""
    for seed, name in ((1, "a"), (2, "b")):
        _saved_adapter(tmp_path / name, seed=seed)
    pipe = get_dummy_pipeline()
    for name in ("a", "b"):
        pipe.load_lora_weights(tmp_path / name, adapter_name=name)
    pipe.set_adapters("a")
    adapted_a = torch.as_tensor(audio(pipe))
    pipe.fuse_lora()
    for action, message in [
        (lambda: pipe.set_adapters("b"), "switching adapters"),
        (pipe.disable_lora, "disabling them"),
        (pipe.enable_lora, "enabling them"),
        (lambda: pipe.delete_adapters("a"), "deleting adapters"),
        (lambda: pipe.model.save_adapter(tmp_path / "fused-save"), "saving an adapter"),
    ]:
        with pytest.raises(ValueError, match=f"fused into the weights, so {message} .*unfuse_lora\\(\\)"):
            action()
    assert pipe.get_active_adapters() == ["a"] and pipe.get_list_adapters() == {"model": ["a", "b"]}
    torch.testing.assert_close(torch.as_tensor(audio(pipe)), adapted_a, rtol=1e-4, atol=1e-4)
    assert not (tmp_path / "fused-save").exists()
    with pytest.raises(ValueError, match="^Adapters are fused: unfuse them first"):  # not a chained clean-up error
        pipe.load_lora_weights(tmp_path / "a", adapter_name="c")
    pipe.unfuse_lora()
    pipe.set_adapters("b")  # unfused, the controls work again
    assert not torch.equal(torch.as_tensor(audio(pipe)), adapted_a)
    pipe.disable_lora()
    with pytest.raises(ValueError, match="adapters are disabled .* enable_lora\\(\\) first"):
        pipe.fuse_lora()  # fused anyway before
    pipe.enable_lora()


def test_small_lora_mistakes_are_named(tmp_path):
    good = _saved_adapter(tmp_path / "good")
    pipe = get_dummy_pipeline()
    with pytest.raises(TypeError, match="takes an adapter folder or Hub repository id, got NoneType"):
        pipe.load_lora_weights(None)
    pipe.load_lora_weights(good)
    pipe.load_lora_weights(good)
    pipe.delete_adapters("default_0")
    pipe.load_lora_weights(good)  # "default_1" exists: the next free name, not an error about a name never given
    assert pipe.get_list_adapters() == {"model": ["default_1", "default_2"]}
    pipe.set_adapters(["default_1"], adapter_weights=[1.0])  # diffusers' form, all at their own scale
    with pytest.raises(ValueError, match="adapter_weights has 1 values for 2 adapters"):
        pipe.set_adapters(["default_1", "default_2"], adapter_weights=[1.0])
    with pytest.raises(ValueError, match="per-adapter weights are not supported"):
        pipe.set_adapters(["default_1", "default_2"], adapter_weights=[0.5, 1.0])
    empty = _edited(good, tmp_path / "empty")
    from safetensors.torch import save_file

    save_file({}, str(empty / ADAPTER_WEIGHTS))
    with pytest.raises(ValueError, match="holds no weights"):
        pipe.load_lora_weights(empty, adapter_name="empty")


def test_changes_made_while_fused_reach_the_lora_layers_put_back(tmp_path):
    """The LoRA layers set aside while fused sat outside the model: a dtype, matmul dtype or train/eval change made
    meanwhile skipped them, so after unfusing the model failed (mixed dtypes) or silently kept bfloat16 matmuls."""
    pipe = get_dummy_pipeline()
    model = pipe.model
    model.set_matmul_dtype(torch.bfloat16)
    pipe.load_lora_weights(_saved_adapter(tmp_path / "a"), adapter_name="a")  # its own linears multiply in float32
    mixed = torch.as_tensor(audio(pipe))
    pipe.fuse_lora()
    pipe.unfuse_lora()
    assert torch.equal(torch.as_tensor(audio(pipe)), mixed)  # nothing changed while fused: put back exactly
    model.set_matmul_dtype(torch.float32)
    adapted = torch.as_tensor(audio(pipe))

    def low_precision_layers():
        return [name for name, module in model.named_modules() if type(module).__name__ == "LowPrecisionLinear"]

    model.set_matmul_dtype(torch.bfloat16)
    pipe.fuse_lora()
    model.set_matmul_dtype(torch.float32)
    model.train()
    pipe.unfuse_lora()
    assert low_precision_layers() == [] and model.matmul_dtype == torch.float32
    assert all(module.training for module in model.modules())
    model.eval()
    assert torch.equal(torch.as_tensor(audio(pipe)), adapted)

    pipe.fuse_lora()
    pipe.to(torch.bfloat16)
    pipe.unfuse_lora()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.isfinite(torch.as_tensor(audio(pipe))).all()  # was: mat1 and mat2 must have the same dtype
    pipe.fuse_lora()
    pipe.to(torch.float32)
    pipe.unload_lora_weights()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert torch.isfinite(torch.as_tensor(audio(pipe))).all()


def test_deleting_an_adapter_leaves_disabled_adapters_disabled(tmp_path):
    """Deleting one of two adapters after disable_lora() switched the other one back on."""
    pipe = get_dummy_pipeline()
    base = torch.as_tensor(audio(pipe))
    for seed, name in ((1, "a"), (2, "b")):
        pipe.load_lora_weights(_saved_adapter(tmp_path / name, seed=seed), adapter_name=name)
    pipe.disable_lora()
    pipe.delete_adapters("b")
    assert pipe.get_active_adapters() == [] and pipe.get_list_adapters() == {"model": ["a"]}
    assert torch.equal(torch.as_tensor(audio(pipe)), base)
    pipe.enable_lora()
    assert pipe.get_active_adapters() == ["a"] and not torch.equal(torch.as_tensor(audio(pipe)), base)


def test_a_repeated_adapter_name_is_refused_instead_of_applied_twice(tmp_path):
    """A name given twice to set_adapters or fuse_lora added that adapter twice."""
    pipe = get_dummy_pipeline()
    for seed, name in ((1, "a"), (2, "b")):
        pipe.load_lora_weights(_saved_adapter(tmp_path / name, seed=seed), adapter_name=name)
    pipe.set_adapters("a")
    once = torch.as_tensor(audio(pipe))
    with pytest.raises(ValueError, match="'a' is named twice in \\['a', 'b', 'a'\\].*adapter_weights"):
        pipe.set_adapters(["a", "b", "a"])
    with pytest.raises(ValueError, match="'a' is named twice"):
        pipe.fuse_lora(adapter_names=["a", "a"])
    assert pipe.get_active_adapters() == ["a"] and lora_linears(pipe.model) != []  # nothing changed, nothing fused
    assert torch.equal(torch.as_tensor(audio(pipe)), once)
    pipe.delete_adapters(["b", "b"])  # deleting twice is deleting once
    assert pipe.get_list_adapters() == {"model": ["a"]}


def test_an_unknown_adapter_name_is_named_before_anything_is_written(tmp_path):
    pipe = get_dummy_pipeline()
    pipe.load_lora_weights(_saved_adapter(tmp_path / "a"), adapter_name="a")
    model = pipe.model
    for action in (
        lambda: model.save_adapter(tmp_path / "out", adapter_name="A"),
        lambda: model.get_adapter_state_dict("A"),
        lambda: model.adapter_summary("A"),
    ):
        with pytest.raises(ValueError, match="No adapter named \\['A'\\]; loaded: \\['a'\\]"):
            action()
    assert not (tmp_path / "out").exists()  # was left behind, empty
    api = RecordingApi()
    with pytest.raises(ValueError, match="No adapter named \\['A'\\]"):
        push_adapter_to_hub(model, "org/voice", adapter_name="A", api=api)
    assert api.calls == []  # no repository was created for it


def test_an_adapter_card_names_its_base_pipeline_as_others_can_load_it(tmp_path):
    """The card's snippet named the trainer's local path of the base model's `model/` subfolder (it loads nowhere
    else, and not even there: it is not a pipeline folder). A Hub id stays, a Hub cache folder becomes its id, the
    embedded default becomes `from_pretrained()`, another local folder a placeholder."""
    from types import SimpleNamespace

    from modeling_ditar.lora import adapter_card

    cache = tmp_path / "hub" / "models--org--ditar-mine" / "snapshots" / "abc123" / "model"
    cache.mkdir(parents=True)
    local = tmp_path / "my-runs" / "pipe" / "model"
    local.mkdir(parents=True)
    embedded = Path(__file__).resolve().parents[1] / "modeling_ditar" / "default" / "model"
    expected = {
        "org/ditar": ('from_pretrained("org/ditar")', "base_model: org/ditar"),
        str(cache): ('from_pretrained("org/ditar-mine")', "base_model: org/ditar-mine"),
        str(embedded): ("from_pretrained()  # the package's default model", None),
        str(local): ('from_pretrained("path/to/base_pipeline")', None),
    }
    for base, (snippet, meta) in expected.items():
        config = SimpleNamespace(base_model_name_or_path=base, r=2, lora_alpha=4, target_modules=["q"], use_dora=False)
        card = adapter_card(config, {"w": torch.zeros(3)})
        assert snippet in card, base
        assert (meta in card) if meta else ("base_model:" not in card), base
        assert str(tmp_path) not in card and "/work/" not in card
