"""A cheaper sampler while candidates compete: `candidate_num_inference_steps` and the model's optional
`candidate_locdit` sample the patches before the pruning point; the kept candidate goes on with LocDiT's full
sampler. One-shot, `generate` and streaming keep agreeing, and the part is saved, loaded and dropped like any other."""

import json

import numpy as np
import pytest
import torch
from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline

from modeling_ditar import DiTARForConditionalGeneration, DiTARPipeline
from modeling_ditar.generation_ditar import resolve_generation_settings

PRUNE_AFTER = 2


def _perturb(locdit, seed: int = 5) -> None:
    """Give a LocDiT weights of its own (a stand-in for a distilled student)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in locdit.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)


def _pipe(candidate_steps: int | None = 1, **overrides):
    pipe = get_dummy_pipeline(ctc_loss_weight=1.0, candidate_locdit=True, **overrides)
    pipe.model.candidate_locdit.load_state_dict(pipe.model.locdit.state_dict())
    _perturb(pipe.model.candidate_locdit)
    pipe.model.generation_config.candidate_num_inference_steps = candidate_steps
    return pipe


def _count_calls(model) -> dict:
    calls = {"locdit": 0, "candidate_locdit": 0}
    for name in calls:
        count = lambda *args, name=name: calls.__setitem__(name, calls[name] + 1)  # noqa: E731
        getattr(model, name).register_forward_pre_hook(count)
    return calls


def _patches(model, enc, steps: int, seed: int, **settings) -> list[torch.Tensor]:
    """Every row's patch at every step of `generate_patches` with 3 candidates per text."""
    return [
        step.patch.clone()
        for step in model.generate_patches(
            **enc,
            max_new_patches=5,
            num_inference_steps=steps,
            guidance_scale=2.0,
            temperature=0.5,
            generator=torch.Generator().manual_seed(seed),
            candidates_per_text=3,
            candidate_prune_after_patches=PRUNE_AFTER,
            **settings,
        )
    ]


def _encoded(pipe, candidates: int = 3) -> dict:
    inputs = get_dummy_inputs()
    enc = pipe.encode_inputs([inputs["text"]], inputs["prompt_audio"], inputs["prompt_text"], inputs["sampling_rate"])
    return {key: value.repeat_interleave(candidates, dim=0) for key, value in enc.items()}


def test_the_candidate_locdit_samples_exactly_the_patches_before_the_pruning_point():
    pipe = _pipe(candidate_steps=1)
    calls = _count_calls(pipe.model)
    pipe(**get_dummy_inputs(max_new_patches=5), num_candidates=3, candidate_prune_after_patches=PRUNE_AFTER)
    # 2 patches x 1 step with the candidate LocDiT (all 3 candidates in one call), then 3 patches x 2 steps
    assert calls == {"candidate_locdit": PRUNE_AFTER * 1, "locdit": (5 - PRUNE_AFTER) * 2}

    calls.update(locdit=0, candidate_locdit=0)
    pipe(**get_dummy_inputs(max_new_patches=5), num_candidates=1)  # no candidates, no candidate phase
    assert calls == {"candidate_locdit": 0, "locdit": 5 * 2}


def test_the_candidate_phase_equals_a_model_whose_locdit_is_the_candidate_one():
    pipe = _pipe(candidate_steps=1)
    enc = _encoded(pipe)
    hybrid = _patches(pipe.model, enc, steps=2, seed=11)

    student_only = get_dummy_pipeline(ctc_loss_weight=1.0).model
    student_only.load_state_dict(pipe.model.state_dict(), strict=False)
    student_only.locdit.load_state_dict(pipe.model.candidate_locdit.state_dict())
    reference = _patches(student_only, enc, steps=1, seed=11)
    for index in range(PRUNE_AFTER):  # same draws, same sampler: the same patches for all 3 candidates
        torch.testing.assert_close(hybrid[index], reference[index])

    teacher_only = get_dummy_pipeline(ctc_loss_weight=1.0).model
    teacher_only.load_state_dict(pipe.model.state_dict(), strict=False)  # the same model without the candidate part
    assert not torch.allclose(hybrid[0], _patches(teacher_only, enc, steps=2, seed=11)[0])


def test_a_candidate_locdit_equal_to_locdit_at_the_same_steps_changes_nothing():
    pipe = _pipe(candidate_steps=None)
    plain = get_dummy_pipeline(ctc_loss_weight=1.0)
    pipe.model.load_state_dict(plain.model.state_dict(), strict=False)  # the same weights (not the same init draws)
    pipe.model.candidate_locdit.load_state_dict(plain.model.locdit.state_dict())
    settings = {"num_candidates": 3, "candidate_prune_after_patches": PRUNE_AFTER}
    ours = pipe(**get_dummy_inputs(max_new_patches=5, generator=torch.Generator().manual_seed(4)), **settings)
    theirs = plain(**get_dummy_inputs(max_new_patches=5, generator=torch.Generator().manual_seed(4)), **settings)
    np.testing.assert_array_equal(ours.audios, theirs.audios)


def test_fewer_candidate_steps_without_a_candidate_locdit_use_locdit():
    pipe = get_dummy_pipeline(ctc_loss_weight=1.0)
    pipe.model.generation_config.candidate_num_inference_steps = 1
    calls = {"locdit": 0}
    pipe.model.locdit.register_forward_pre_hook(lambda *args: calls.__setitem__("locdit", calls["locdit"] + 1))
    pipe(**get_dummy_inputs(max_new_patches=5), num_candidates=3, candidate_prune_after_patches=PRUNE_AFTER)
    assert calls["locdit"] == PRUNE_AFTER * 1 + (5 - PRUNE_AFTER) * 2


def test_removing_the_candidate_locdit_samples_the_candidates_at_locdit_s_own_steps():
    """The one step was the student's: after remove_candidate_locdit() LocDiT samples every patch at its 2 steps (one
    step of a LocDiT trained for several would give poor candidates)."""
    pipe = _pipe(candidate_steps=1)
    pipe.model.remove_candidate_locdit()
    assert pipe.model.candidate_locdit is None and pipe.model.generation_config.candidate_num_inference_steps is None
    calls = {"locdit": 0}
    pipe.model.locdit.register_forward_pre_hook(lambda *args: calls.__setitem__("locdit", calls["locdit"] + 1))
    pipe(**get_dummy_inputs(max_new_patches=5), num_candidates=3, candidate_prune_after_patches=PRUNE_AFTER)
    assert calls["locdit"] == 5 * 2
    pipe.model.generation_config.candidate_num_inference_steps = 1  # chosen again: LocDiT at one step
    pipe.model.remove_candidate_locdit()  # nothing left to remove: the caller's setting stays
    assert pipe.model.generation_config.candidate_num_inference_steps == 1


def test_without_pruning_every_patch_is_a_candidate_patch():
    pipe = _pipe(candidate_steps=1)
    calls = _count_calls(pipe.model)
    pipe(**get_dummy_inputs(max_new_patches=4), num_candidates=2, candidate_prune_after_patches=0)
    assert calls == {"candidate_locdit": 4, "locdit": 0}


@pytest.mark.parametrize("text", ["hello there", "First sentence here. " * 12 + "And the last one."])
def test_stream_and_generate_equal_one_shot_with_a_candidate_locdit(text):
    pipe = _pipe(candidate_steps=1)
    settings = {"num_candidates": 3, "candidate_prune_after_patches": PRUNE_AFTER}
    inputs = get_dummy_inputs(text=text, max_new_patches=5)
    one_shot = pipe(**dict(inputs, generator=torch.Generator().manual_seed(3)), **settings)
    streamed = np.concatenate(list(pipe.stream(**dict(inputs, generator=torch.Generator().manual_seed(3)), **settings)))
    np.testing.assert_array_equal(streamed, one_shot.audios[0][: one_shot.audio_lengths[0]])

    if text == "hello there":
        features = pipe(**dict(inputs, generator=torch.Generator().manual_seed(3)), output_type="features", **settings)
        enc = pipe.encode_inputs([text], inputs["prompt_audio"], inputs["prompt_text"], inputs["sampling_rate"])
        out = pipe.model.generate(
            **enc,
            max_new_patches=5,
            num_inference_steps=2,
            guidance_scale=2.0,
            temperature=0.5,
            generator=torch.Generator().manual_seed(3),
            **settings,
        )
        generated = pipe.model.denormalize_features(out.features[0, : int(out.lengths[0])].float())
        torch.testing.assert_close(generated, torch.as_tensor(features.audios[0][: features.audio_lengths[0]]))


def test_the_candidate_locdit_and_its_steps_are_saved_and_loaded(tmp_path):
    pipe = _pipe(candidate_steps=1)
    pipe.save_pretrained(tmp_path / "pipe")
    saved = json.loads((tmp_path / "pipe/model/generation_config.json").read_text())
    assert saved["candidate_num_inference_steps"] == 1
    assert json.loads((tmp_path / "pipe/model/config.json").read_text())["candidate_locdit"] is True
    loaded = DiTARForConditionalGeneration.from_pretrained(tmp_path / "pipe/model")
    for key, value in pipe.model.candidate_locdit.state_dict().items():
        torch.testing.assert_close(loaded.candidate_locdit.state_dict()[key], value)
    assert loaded.generation_settings().candidate_num_inference_steps == 1


def test_a_config_without_the_candidate_locdit_loads_the_folder_without_it(tmp_path, caplog):
    pipe = _pipe(candidate_steps=1)
    pipe.model.save_pretrained(tmp_path / "model")
    loaded = DiTARForConditionalGeneration.from_pretrained(tmp_path / "model", candidate_locdit=False)
    assert loaded.candidate_locdit is None
    assert loaded.generation_settings().candidate_num_inference_steps is None  # the student's setting went with it
    for key, value in pipe.model.locdit.state_dict().items():
        torch.testing.assert_close(loaded.locdit.state_dict()[key], value)
    assert "candidate_locdit" not in caplog.text


def test_the_pipeline_loads_without_the_candidate_locdit_when_asked(tmp_path):
    pipe = _pipe(candidate_steps=1)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = DiTARPipeline.from_pretrained(tmp_path / "pipe", candidate_locdit=False)
    assert loaded.model.candidate_locdit is None and not loaded.model.config.candidate_locdit
    assert loaded.model.generation_settings().candidate_num_inference_steps is None
    assert DiTARPipeline.from_pretrained(tmp_path / "pipe").model.candidate_locdit is not None
    with pytest.raises(ValueError, match="can only be False"):
        DiTARPipeline.from_pretrained(tmp_path / "pipe", candidate_locdit=True)


def test_set_locdit_dtype_casts_both_locdits_and_nothing_else():
    model = _pipe().model
    model.set_locdit_dtype(torch.bfloat16)
    assert {p.dtype for p in model.locdit.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.candidate_locdit.parameters()} == {torch.bfloat16}
    assert model.stop_head.weight.dtype == torch.float32


@pytest.mark.parametrize("value", [0, -1, 1.5, "1"])
def test_a_bad_candidate_step_count_is_refused_with_its_name(value):
    with pytest.raises(ValueError, match="candidate_num_inference_steps"):
        resolve_generation_settings(None, candidate_num_inference_steps=value)


def test_training_from_a_pipeline_with_a_candidate_locdit_leaves_it_out(tmp_path, capsys):
    from test_training import _train_module

    train = _train_module()
    pipe = _pipe()
    pipe.save_pretrained(tmp_path / "pipe")
    model, _ = train.load_model_and_processor(train.TrainConfig(init_from=str(tmp_path / "pipe")), tmp_path)
    assert model.candidate_locdit is None and model.config.candidate_locdit is False
    for key, value in pipe.model.locdit.state_dict().items():
        torch.testing.assert_close(model.locdit.state_dict()[key], value)
    assert "candidate LocDiT is left out" in capsys.readouterr().out
    # the student's one step goes with it: LocDiT samples the candidates at its own steps
    assert pipe.model.generation_config.candidate_num_inference_steps == 1
    assert model.generation_settings().candidate_num_inference_steps is None
    with pytest.raises(ValueError, match="does not train a candidate LocDiT"):
        train.load_model_and_processor(
            train.TrainConfig(init_from=str(tmp_path / "pipe"), model={"candidate_locdit": True}), tmp_path
        )


def test_a_config_with_a_candidate_locdit_and_weights_without_one_is_refused(tmp_path):
    plain = get_dummy_pipeline(ctc_loss_weight=1.0).model
    plain.save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="the weights hold no candidate LocDiT.*candidate_locdit=False"):
        DiTARForConditionalGeneration.from_pretrained(tmp_path / "model", candidate_locdit=True)
    model, info = DiTARForConditionalGeneration.from_pretrained(tmp_path / "model", output_loading_info=True)
    assert model.candidate_locdit is None and not info["missing_keys"]


def test_a_lora_adapter_leaves_the_candidate_locdit_alone_and_says_so(tmp_path):
    pytest.importorskip("peft")
    from transformers.testing_utils import CaptureLogger

    from modeling_ditar import lora
    from modeling_ditar.lora import default_lora_config

    pipe = _pipe()
    pipe.model.add_adapter(default_lora_config(rank=2), adapter_name="voice")
    adapted = [name for name, module in pipe.model.named_modules() if hasattr(module, "lora_A")]
    assert any(name.startswith("locdit.") for name in adapted)
    assert not any(name.startswith("candidate_locdit.") for name in adapted)
    folder = pipe.model.save_adapter(tmp_path / "voice")

    fresh = _pipe()
    with CaptureLogger(lora.logger) as captured:
        fresh.load_lora_weights(folder, adapter_name="voice")
    assert "remove_candidate_locdit()" in captured.out
