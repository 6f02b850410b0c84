"""The generation API's contracts: settings from the generation config, strict keyword arguments, the
text-to-speech model's requirements, voices given as conversations, and the dtype a pipeline is saved in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_helpers import DiTARModelTester
from pipeline_helpers import VOICE_TEXT, get_dummy_pipeline, tone
from safetensors import safe_open

from modeling_ditar import DiTARForTextToSpeech, DiTARGenerationConfig, DiTARPipeline
from modeling_ditar.generation_ditar import warn_once


@pytest.fixture(scope="module")
def tester():
    return DiTARModelTester()


def test_forward_rejects_a_misspelt_argument_and_names_the_right_one(tester):
    model = tester.get_model()
    inputs = tester.prepare_inputs()
    mask = inputs.pop("speech_attention_mask")
    with pytest.raises(TypeError, match="'speech_atention_mask' \\(did you mean 'speech_attention_mask'\\?\\)"):
        model(**inputs, speech_atention_mask=mask)


def test_generate_rejects_unknown_arguments_and_bad_generators(tester):
    model = tester.get_model()
    inputs = tester.prepare_generation_inputs()
    with pytest.raises(TypeError, match="'num_candidate' \\(did you mean 'num_candidates'\\?\\)"):
        model.generate(**inputs, num_candidate=2)
    for bad in ("seed0", 42, [1]):
        with pytest.raises(TypeError, match="torch.Generator\\(\\).manual_seed"):
            model.generate(**inputs, generator=bad)


def test_call_settings_override_the_generation_config_and_are_checked(tester):
    model = tester.get_model()
    model.generation_config = DiTARGenerationConfig(num_inference_steps=3, guidance_scale=1.0)
    assert model.generation_settings().num_inference_steps == 3
    assert model.generation_settings(num_inference_steps=5).num_inference_steps == 5
    with pytest.raises(ValueError, match="`temperature` must be a number in \\[0, 1\\]"):
        model.generation_settings(temperature=2.0)
    model.generation_config.guidance_scale = -1.0  # a bad saved value fails when it is used, naming it
    with pytest.raises(ValueError, match="`guidance_scale` .* \\(from the generation config: `model.generation_config"):
        model.generate(**tester.prepare_generation_inputs())


def test_numpy_and_tensor_numbers_are_numbers_and_config_misspellings_are_named(tester, caplog):
    """`guidance_scale=np.float32(2.0)` was refused as 'must be a finite number ..., got np.float32(2.0)'; a misspelt
    attribute of the generation config (`guidance_scal`) and `num_beams` were unused silently."""
    import numpy as np

    model = tester.get_model()
    settings = model.generation_settings(
        guidance_scale=np.float32(2.0), temperature=torch.tensor(0.5), num_inference_steps=np.int64(3)
    )
    assert (settings.guidance_scale, settings.temperature, settings.num_inference_steps) == (2.0, 0.5, 3)
    assert type(settings.guidance_scale) is float and type(settings.num_inference_steps) is int
    model.generation_config.num_inference_steps = np.int64(2)
    assert model.generation_settings().num_inference_steps == 2
    model.generation_config.guidance_scal = 5.0
    with pytest.raises(
        ValueError, match="`guidance_scal`, which is not a DiTAR setting; did you mean `guidance_scale`"
    ):
        model.generation_settings()
    del model.generation_config.guidance_scal
    model.generation_config.num_beams = 3
    warn_once.cache_clear()  # warned once per process
    with caplog.at_level("WARNING"):
        model.generation_settings()
    assert "The generation config sets num_beams=3, which DiTAR does not use" in caplog.text


def test_other_libraries_names_and_do_sample_false_in_the_generation_config_are_named(tester, caplog, tmp_path):
    """`guidance`, `steps`, `cfg_scale` (other libraries' names) in the generation config were kept and silently
    unused; do_sample=False changed nothing without a word, and saving blamed transformers' `temperature`."""
    model = tester.get_model()
    for name, setting in (
        ("guidance", "guidance_scale"),
        ("steps", "num_inference_steps"),
        ("cfg_scale", "guidance_scale"),
    ):
        setattr(model.generation_config, name, 5)
        with pytest.raises(ValueError, match=f"`{name}`, which is not a DiTAR setting; did you mean `{setting}`"):
            model.generation_settings()
        delattr(model.generation_config, name)
    model.generation_config.do_sample = False
    with caplog.at_level("WARNING"):
        model.generation_settings()
    assert "do_sample=False does not apply to DiTAR: it always samples" in caplog.text
    with pytest.raises(ValueError, match="does not apply to DiTAR.*Set do_sample=True"):
        model.generation_config.save_pretrained(tmp_path)


def test_text_to_speech_model_needs_a_vocoder_config(tester):
    with pytest.raises(ValueError, match="needs config.vocoder_config"):
        DiTARForTextToSpeech(tester.get_config())


def test_text_to_speech_model_refuses_a_vocoder_of_other_mel_bins(tester):
    vocoder = {"vocoder_type": "griffin_lim", "sampling_rate": 8000, "n_fft": 64, "hop_length": 16}
    with pytest.raises(ValueError, match=r"reads 9 mel bins, but the model makes config.feature_dim=8"):
        DiTARForTextToSpeech(tester.get_config(vocoder_config={**vocoder, "num_mel_bins": 9}))
    DiTARForTextToSpeech(tester.get_config(vocoder_config={**vocoder, "num_mel_bins": 8}))


def test_text_to_speech_generate_accepts_standard_generation_flags(tester):
    vocoder = {
        "vocoder_type": "griffin_lim",
        "sampling_rate": 8000,
        "n_fft": 64,
        "hop_length": 16,
        "num_mel_bins": 8,
        "n_iter": 4,
    }
    model = DiTARForTextToSpeech(tester.get_config(vocoder_config=vocoder)).eval()
    inputs = tester.prepare_generation_inputs()
    seed = torch.Generator().manual_seed(0)
    plain = model.generate(**inputs, generator=seed)
    seed = torch.Generator().manual_seed(0)
    # what transformers' pipeline passes to every model: accepted, no effect
    flagged = model.generate(**inputs, generator=seed, max_new_tokens=256, pad_token_id=0, return_dict_in_generate=True)
    assert plain.sampling_rate == 8000 and len(plain.audio) == inputs["input_ids"].shape[0]
    for a, b in zip(plain.audio, flagged.audio, strict=True):
        assert torch.equal(a, b)


def test_standard_flags_a_caller_sets_are_named_as_ignored(tester, caplog):
    """transformers' pipeline passes max_new_tokens=256, pad_token_id and return_dict_in_generate to every model
    (silent); flags a user sets, such as max_new_tokens=1 or num_beams=4, change nothing and are named once."""
    vocoder = {"vocoder_type": "griffin_lim", "sampling_rate": 8000, "n_fft": 64, "hop_length": 16, "num_mel_bins": 8}
    model = DiTARForTextToSpeech(tester.get_config(vocoder_config=vocoder)).eval()
    inputs = tester.prepare_generation_inputs()
    warn_once.cache_clear()  # warned once per process
    with caplog.at_level("WARNING"):
        model.generate(**inputs, max_new_patches=2, max_new_tokens=256, pad_token_id=0, return_dict_in_generate=True)
    assert "generate ignores" not in caplog.text
    with caplog.at_level("WARNING"):
        model.generate(**inputs, max_new_patches=2, max_new_tokens=1, num_beams=4, do_sample=False)
    assert "generate ignores do_sample=False, max_new_tokens=1, num_beams=4: DiTAR's length is set by" in caplog.text


def test_positions_past_the_backbone_are_refused_or_the_derived_cap_lowered(tester, caplog):
    """A text too long for the backbone's positions (256 here) ran past them with no word; the pipeline speaks long
    texts sentence by sentence, transformers' pipeline and generate do not."""
    model = tester.get_model().eval()
    model.stop_head.bias.data.fill_(-20.0)  # never stops: the cap decides the length
    assert model.config.text_config.max_position_embeddings == 256

    def tokens(n):
        return {"input_ids": torch.full((1, n), 5), "attention_mask": torch.ones(1, n, dtype=torch.long)}

    with pytest.raises(ValueError, match="300 text tokens and its prompt need positions up to 300, past .* 256"):
        model.generate(**tokens(300))
    with pytest.raises(ValueError, match="max_new_patches=100 passes the backbone's max_position_embeddings 256"):
        model.generate(**tokens(200), max_new_patches=100)
    # the start of speech sits at position 200, so 55 patches fit before 255; the derived cap is lowered to them
    assert int(model.default_max_new_patches(torch.tensor([200]))[0]) > 55
    warn_once.cache_clear()
    with caplog.at_level("WARNING"):
        out = model.generate(**tokens(200))
        assert int(out.lengths[0]) == 55 * model.config.patch_size
        assert int(model.generate(**tokens(210)).lengths[0]) == 45 * model.config.patch_size
    # warned once (with the first text's room), not once per room left
    lowered = [r.getMessage() for r in caplog.records if "patch cap of a long text was lowered" in r.getMessage()]
    assert len(lowered) == 1 and "(55 patches in row 0)" in lowered[0]


def test_patch_generation_builds_no_autograd_graph(tester):
    """The pipeline and streaming iterate `generate_patches` directly: without no_grad every patch kept its graph."""
    model = tester.get_model().eval()
    with torch.enable_grad():
        step = next(iter(model.generate_patches(**tester.prepare_generation_inputs(), max_new_patches=1)))
    assert not step.patch.requires_grad


def test_conversation_errors_name_the_problem():
    processor = get_dummy_pipeline().processor
    voice = {
        "role": "user",
        "content": [{"type": "audio", "audio": tone(), "sampling_rate": 8000}, {"type": "text", "text": VOICE_TEXT}],
    }
    with pytest.raises(ValueError, match="2 messages with audio"):
        processor.apply_chat_template([voice, voice, {"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="last message must hold the text to speak"):
        processor.apply_chat_template([voice])
    # a first part in its own message was dropped without a word: only the last message was spoken
    with pytest.raises(ValueError, match="has 2 messages without audio; DiTAR speaks the text of one message"):
        processor.apply_chat_template(
            [{"role": "user", "content": "Please read this first part."}, {"role": "user", "content": "Thanks."}]
        )
    with pytest.raises(ValueError, match="has 2 messages without audio"):
        processor.apply_chat_template(
            [{"role": "system", "content": "Speak calmly."}, voice, {"role": "user", "content": "hi"}]
        )
    with pytest.raises(ValueError, match="needs the transcript"):
        processor.apply_chat_template(
            [{"role": "user", "content": [voice["content"][0]]}, {"role": "user", "content": "hi"}]
        )
    with pytest.raises(ValueError, match="no URLs"):
        processor.apply_chat_template(
            [
                {
                    "role": "user",
                    "content": [{"type": "audio", "url": "http://x/a.wav"}, {"type": "text", "text": "a"}],
                },
                {"role": "user", "content": "hi"},
            ]
        )
    with pytest.raises(ValueError, match="message 0: an audio item with an array needs its rate beside it"):
        processor.apply_chat_template(
            [
                {"role": "user", "content": [{"type": "audio", "audio": tone()}, {"type": "text", "text": "a"}]},
                {"role": "user", "content": "hi"},
            ]
        )
    inputs = processor.apply_chat_template([voice, {"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert inputs["prompt_features"].shape[0] == 1
    # a `datasets` Audio value carries its rate
    row = {"array": tone(), "sampling_rate": 8000}
    as_row = processor.apply_chat_template(
        [
            {"role": "user", "content": [{"type": "audio", "audio": row}, voice["content"][1]]},
            {"role": "user", "content": "hi"},
        ]
    )
    torch.testing.assert_close(as_row["prompt_features"], inputs["prompt_features"])


def _weights_dtype(path) -> str:
    with safe_open(str(path), "pt") as f:
        return str(f.get_tensor(next(iter(f.keys()))).dtype)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_a_folder_stored_in_half_precision_computes_in_float32_unless_asked(tmp_path, half):
    pipe = get_dummy_pipeline()
    pipe.model.to(half)
    pipe.save_pretrained(tmp_path / "half")
    assert DiTARPipeline.from_pretrained(tmp_path / "half").model.dtype == torch.float32
    assert DiTARPipeline.from_pretrained(str(tmp_path / "half"), dtype=half).model.dtype == half
    assert DiTARPipeline.from_pretrained(tmp_path / "half", torch_dtype=half).model.dtype == half
    # a float32 folder is loaded as it is
    get_dummy_pipeline().save_pretrained(tmp_path / "full")
    assert DiTARPipeline.from_pretrained(tmp_path / "full").model.dtype == torch.float32


def test_saving_keeps_float16_weights_that_were_only_upcast(tmp_path):
    pipe = get_dummy_pipeline()
    pipe.model.to(torch.float16)
    pipe.save_pretrained(tmp_path / "half")
    loaded = DiTARPipeline.from_pretrained(tmp_path / "half", dtype=torch.float32)
    assert loaded.model.dtype == torch.float32
    loaded.save_pretrained(tmp_path / "again")
    assert _weights_dtype(tmp_path / "again" / "model" / "model.safetensors") == "torch.float16"
    assert json.loads((tmp_path / "again" / "model" / "config.json").read_text())["dtype"] == "float16"
    assert loaded.model.dtype == torch.float32  # the model in memory is untouched
    again = DiTARPipeline.from_pretrained(tmp_path / "again", dtype=torch.float32)
    for a, b in zip(loaded.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(a, b)
    # weights changed after loading no longer fit float16: they are saved as they are
    with torch.no_grad():
        next(loaded.model.parameters()).add_(1e-7)
    loaded.save_pretrained(tmp_path / "trained")
    assert _weights_dtype(tmp_path / "trained" / "model" / "model.safetensors") == "torch.float32"
    np.testing.assert_array_equal(loaded.default_voice[0], again.default_voice[0])


def test_warnings_with_per_call_values_are_logged_and_remembered_once_per_kind(tester, caplog):
    """transformers' `warning_once` remembers each message text in an unbounded cache: a warning that names per-call
    values (`generate(max_new_tokens=n)` on every call, a costly setting's value, the generation config's unused
    flags) was logged again, and grew that cache, for every new value. Each kind is now warned about once, with the
    values of its first occurrence, and takes one entry."""
    import logging

    from modeling_ditar.generation_ditar import (
        logger,
        resolve_generation_settings,
        warn_ignored_generation_flags,
    )

    model = tester.get_model()
    warn_once.cache_clear()
    cached = logger.warning_once.cache_info().currsize
    with caplog.at_level("WARNING"):
        for n in (300, 301, 302):
            warn_ignored_generation_flags({"max_new_tokens": n})
            resolve_generation_settings(None, max_new_patches=5000 + n)
            model.generation_config.num_beams = n
            model.generation_settings()
        warn_ignored_generation_flags({"max_new_tokens": 1, "num_beams": 2})  # another set of flags: another kind
    messages = [record.getMessage() for record in caplog.records]
    assert [m.split(":")[0] for m in messages if m.startswith("generate ignores")] == [
        "generate ignores max_new_tokens=300",
        "generate ignores max_new_tokens=1, num_beams=2",
    ]
    assert [m.split(" is far")[0] for m in messages if "far beyond" in m] == ["max_new_patches=5300"]
    assert [m.split(",")[0] for m in messages if m.startswith("The generation config sets")] == [
        "The generation config sets num_beams=300"
    ]
    assert len(warn_once) == 4 and logger.warning_once.cache_info().currsize == cached
    caplog.clear()
    own = logging.getLogger("modeling_ditar.test_warn_once")
    with caplog.at_level("WARNING"):
        warn_once(own, "a kind", "first: 1")
        warn_once(own, "a kind", "first: 2")
        assert len(warn_once) == 5
        warn_once.cache_clear()
        assert len(warn_once) == 0
        warn_once(own, "a kind", "again: 3")
    assert [record.getMessage() for record in caplog.records] == ["first: 1", "again: 3"]


@pytest.mark.parametrize(
    "setting, value", [("num_inference_steps", 101), ("num_candidates", 17), ("max_new_patches", 5000)]
)
def test_settings_far_beyond_the_usual_cost_warn(tester, caplog, setting, value):
    model = tester.get_model(ctc_loss_weight=0.1)
    warn_once.cache_clear()  # warned once per process
    with caplog.at_level("WARNING"):
        model.generation_settings(**{setting: value})
    assert any(f"{setting}={value} is far beyond the usual cost" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING"):
        model.generation_settings()
    assert not [r for r in caplog.records if "far beyond" in r.getMessage()]


def test_saving_needs_no_peft(tester, monkeypatch):
    """peft is optional (the train extra): the check `save_pretrained` makes for LoRA layers works where peft cannot
    be imported (`.ci/check_lowest_versions.sh` saves pipelines in a venv without peft, end to end)."""
    import builtins

    from modeling_ditar import lora

    real_import = builtins.__import__

    def hide_peft(name, *args, **kwargs):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("peft is hidden by this test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", hide_peft)
    assert lora._tuner_layers(tester.get_model()) == []
