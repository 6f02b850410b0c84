"""Standard transformers, accelerate and peft entry points on `DiTARForConditionalGeneration`: a `GenerationConfig`
passed to `generate` merged with the model's own, `Trainer.evaluate()` reporting `eval_loss`, `resize_token_embeddings`
with a CTC head, offloaded (meta) weights, and peft's task wrappers."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from model_helpers import DiTARModelTester
from transformers import GenerationConfig

from modeling_ditar import DiTARForConditionalGeneration, DiTARGenerationConfig
from modeling_ditar.generation_ditar import GENERATION_DEFAULTS


@pytest.fixture(scope="module")
def tester():
    return DiTARModelTester()


def tuned_model(tester, **settings):
    """A model with a CTC head whose generation config differs from the library defaults in every way that matters."""
    model = tester.get_model(ctc_loss_weight=1.0)
    defaults = {"num_inference_steps": 2, "guidance_scale": 1.5, "num_candidates": 2, "max_new_patches": 3}
    for key, value in {**defaults, **settings}.items():
        setattr(model.generation_config, key, value)
    return model


def generated(model, tester, **kwargs):
    inputs = tester.prepare_generation_inputs()
    return model.generate(**inputs, generator=torch.Generator().manual_seed(0), **kwargs).features


# ---------------------------------------------------------------------------------------------------------------------
# generate(generation_config=...)


def test_a_passed_generation_config_changes_what_it_sets_and_keeps_the_models_other_settings(tester):
    """`generate(generation_config=GenerationConfig(temperature=0.3))` fell back to the library defaults for every
    setting it lacked: the model's 2 steps, guidance 1.5 and 2 candidates became 10, 2.0 and 1."""
    model = tuned_model(tester)
    passed = model.generation_settings(GenerationConfig(temperature=0.3))
    assert passed == model.generation_settings(temperature=0.3)
    assert (passed.num_inference_steps, passed.guidance_scale, passed.num_candidates) == (2, 1.5, 2)
    # bit-identical to the keyword, which was always merged with the model's settings
    assert torch.equal(
        generated(model, tester, generation_config=GenerationConfig(temperature=0.3)),
        generated(model, tester, temperature=0.3),
    )


def test_what_the_passed_config_sets_wins_over_the_model_and_call_keywords_win_over_both(tester):
    model = tuned_model(tester)
    passed = GenerationConfig(num_inference_steps=3, guidance_scale=2.5)
    settings = model.generation_settings(passed)
    assert (settings.num_inference_steps, settings.guidance_scale, settings.num_candidates) == (3, 2.5, 2)
    assert model.generation_settings(passed, num_inference_steps=5).num_inference_steps == 5


def test_a_passed_config_value_equal_to_the_library_default_is_used_as_given(tester):
    """A value of a passed `DiTARGenerationConfig` equal to the library default counted as unset and was replaced by
    the model's: a copy of `model.generation_config` with 10 steps (the library default) generated with the model's 2.
    As in transformers, only None (or absent) settings are filled from the model's config."""
    model = tuned_model(tester, temperature=0.3)
    passed = copy.deepcopy(model.generation_config)
    passed.num_inference_steps, passed.temperature = GENERATION_DEFAULTS["num_inference_steps"], 0.5
    settings = model.generation_settings(passed)
    assert (settings.num_inference_steps, settings.temperature) == (10, 0.5)
    assert settings == model.generation_settings(num_inference_steps=10, temperature=0.5)
    assert torch.equal(
        generated(model, tester, generation_config=passed),
        generated(model, tester, num_inference_steps=10, temperature=0.5),
    )


def test_a_full_ditar_config_is_used_as_given_but_for_its_none_values(tester):
    model = tuned_model(tester)
    settings = model.generation_settings(DiTARGenerationConfig(num_inference_steps=3, guidance_scale=2.0))
    # every value of a DiTARGenerationConfig is set: the library defaults replace the model's guidance and candidates
    assert (settings.num_inference_steps, settings.guidance_scale, settings.num_candidates) == (3, 2.0, 1)
    # None is transformers' "unset": the model's cap of 3 patches stays, not "no cap"
    assert settings.max_new_patches == 3


def test_an_empty_passed_config_generates_as_no_config(tester):
    model = tuned_model(tester, num_candidates=1)
    assert torch.equal(generated(model, tester, generation_config=GenerationConfig()), generated(model, tester))


def test_a_distilled_models_folded_guidance_survives_a_passed_config(tester):
    """The distilled model's `distilled_guidance_scale` was dropped and guidance 2.0 applied again on top of it."""
    model = tuned_model(tester, guidance_scale=1.0, distilled_guidance_scale=1.5)
    settings = model.generation_settings(GenerationConfig(temperature=0.3))
    assert (settings.guidance_scale, settings.distilled_guidance_scale) == (1.0, 1.5)
    with pytest.raises(ValueError, match="`guidance_scale` must be 1 for this model"):
        model.generation_settings(GenerationConfig(guidance_scale=2.0))


# ---------------------------------------------------------------------------------------------------------------------
# transformers' Trainer


def rows(tester, count: int = 4) -> list[dict]:
    """Single training examples (right-padded rows of the tiny batch) for the default data collator."""
    batch = tester.prepare_inputs()
    return [{key: value[index % 2] for key, value in batch.items()} for index in range(count)]


def test_trainer_reports_eval_loss_without_labels(tester, tmp_path):
    """Trainer found no `labels` and no `return_loss` in forward's signature, so evaluate() and predict() reported no
    eval_loss and load_best_model_at_end raised KeyError 'eval_loss'."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=2, report_to=[], use_cpu=True, disable_tqdm=True
    )
    trainer = Trainer(model=tester.get_model(), args=args, eval_dataset=rows(tester))
    assert trainer.can_return_loss and trainer.label_names == []
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"])
    assert math.isfinite(trainer.predict(rows(tester)).metrics["test_loss"])


def test_return_loss_false_leaves_the_total_out(tester):
    model = tester.get_model()
    inputs = tester.prepare_inputs()
    torch.manual_seed(0)
    full = model(**inputs)
    torch.manual_seed(0)
    without = model(**inputs, return_loss=False)
    assert without.loss is None and torch.equal(without.diffusion_loss, full.diffusion_loss)
    torch.manual_seed(0)
    as_tuple = model(**inputs, return_loss=False, return_dict=False)
    assert len(as_tuple) == len(full.to_tuple()) - 1 and torch.equal(as_tuple[0], full.diffusion_loss)


# ---------------------------------------------------------------------------------------------------------------------
# resize_token_embeddings


def test_resize_token_embeddings_resizes_the_ctc_head_and_keeps_its_blank_last(tester, tmp_path):
    """The CTC head stayed at the old vocabulary: a new token id failed in `_ctc_log_probs` with a raw RuntimeError."""
    model = tester.get_model(ctc_loss_weight=1.0)
    vocab, frames = model.config.text_config.vocab_size, model.config.ctc_frames_per_patch
    old_weight = model.ctc_head.weight.detach().clone().view(frames, vocab + 1, -1)
    old_bias = model.ctc_head.bias.detach().clone().view(frames, vocab + 1)
    model.resize_token_embeddings(vocab + 3)

    weight = model.ctc_head.weight.detach().view(frames, vocab + 4, -1)
    bias = model.ctc_head.bias.detach().view(frames, vocab + 4)
    assert torch.equal(weight[:, :vocab], old_weight[:, :vocab]) and torch.equal(weight[:, -1], old_weight[:, -1])
    assert torch.equal(bias[:, :vocab], old_bias[:, :vocab]) and torch.equal(bias[:, -1], old_bias[:, -1])
    torch.testing.assert_close(weight[:, vocab], old_weight[:, :vocab].mean(1))  # an added token: the mean token row

    inputs = tester.prepare_inputs()
    inputs["input_ids"][0, 0] = vocab + 2  # a new token
    model.train()
    assert torch.isfinite(model(**inputs).loss)
    model.eval()
    speech = inputs["speech_features"]
    assert torch.isfinite(model.transcript_ctc_loss(inputs["input_ids"], speech, inputs["attention_mask"])).all()

    model.save_pretrained(tmp_path)
    loaded = DiTARForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.config.text_config.vocab_size == vocab + 3
    assert torch.equal(loaded.ctc_head.weight, model.ctc_head.weight)


def test_shrinking_the_vocabulary_keeps_the_remaining_tokens_and_the_blank(tester):
    model = tester.get_model(ctc_loss_weight=1.0)
    vocab, frames = model.config.text_config.vocab_size, model.config.ctc_frames_per_patch
    old = model.ctc_head.weight.detach().clone().view(frames, vocab + 1, -1)
    model.resize_token_embeddings(vocab - 10)
    new = model.ctc_head.weight.detach().view(frames, vocab - 9, -1)
    assert torch.equal(new[:, :-1], old[:, : vocab - 10]) and torch.equal(new[:, -1], old[:, -1])


# ---------------------------------------------------------------------------------------------------------------------
# offloaded weights


def test_a_disk_offloaded_model_loads_and_generation_says_what_to_do(tester, tmp_path):
    """Loading failed on 'Tensor.item() cannot be called on meta tensors' (the finite-weights check); with that
    skipped, generate failed on 'Tensor on device meta' deep in the sampler."""
    pytest.importorskip("accelerate")
    tester.get_model().save_pretrained(tmp_path / "model")
    model = DiTARForConditionalGeneration.from_pretrained(
        tmp_path / "model", device_map="auto", max_memory={"cpu": "60KB"}, offload_folder=str(tmp_path / "offload")
    )
    assert any(parameter.is_meta for parameter in model.parameters())
    with pytest.raises(RuntimeError, match="not in memory.*without disk offload.*enable_model_cpu_offload"):
        generated(model, tester)


@pytest.mark.parametrize("offload", ["cpu_offload", "meta"])
def test_generation_refuses_weights_on_the_meta_device(tester, offload):
    model = tester.get_model()
    if offload == "cpu_offload":
        from accelerate import cpu_offload

        cpu_offload(model, execution_device=torch.device("cpu"))
    else:
        model.to("meta")
    with pytest.raises(RuntimeError, match="on the meta device"):
        generated(model, tester)
    with pytest.raises(RuntimeError, match="on the meta device"):
        next(model.generate_patches(**tester.prepare_generation_inputs()))


# ---------------------------------------------------------------------------------------------------------------------
# peft


def test_a_peft_task_wrapper_is_named_as_the_cause(tester):
    """get_peft_model(..., LoraConfig(task_type='CAUSAL_LM')) passes labels and inputs_embeds to forward; the refusal
    never said to leave task_type unset."""
    peft = pytest.importorskip("peft")
    inputs = tester.prepare_inputs()
    wrapped = peft.get_peft_model(
        tester.get_model(), peft.LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM")
    )
    with pytest.raises(TypeError, match="'labels'.*Leave task_type unset"):
        wrapped(**inputs)
    plain = peft.get_peft_model(tester.get_model(), peft.LoraConfig(r=4, target_modules=["q_proj"]))
    assert torch.isfinite(plain(**inputs).loss)


def test_a_misspelt_argument_gets_no_peft_hint(tester):
    model = tester.get_model()
    with pytest.raises(TypeError) as error:
        model(**tester.prepare_inputs(), output_attentions=True)
    assert "task_type" not in str(error.value)
