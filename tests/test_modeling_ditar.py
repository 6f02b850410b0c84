"""DiTARForConditionalGeneration: training loss, save/load, cached generation, guidance, stopping, input validation and
a tiny overfitting run. Every test uses the tiny configs of `model_helpers.DiTARModelTester`."""

import copy
import math
import warnings

import pytest
import torch
from model_helpers import (
    TEXT_CONFIGS,
    DiTARModelTester,
    ScriptedStopHead,
    generation_reference_from_forward,
    generators,
    seeded,
    select_row,
    set_stop_logit,
)
from transformers import AutoModel

from modeling_ditar import DiTARForConditionalGeneration, DiTAROutput
from modeling_ditar.sampling import guided_velocity, shifted_time
from modeling_ditar.transformer_blocks import DiTARTransformerStack

TESTER = DiTARModelTester()
P, D, K, H = TESTER.patch_size, TESTER.feature_dim, TESTER.num_history_patches, 32
OUTPUT_FIELDS = ("loss", "diffusion_loss", "stop_loss", "stop_logits", "speech_hidden_states")


def make_model(**overrides) -> DiTARForConditionalGeneration:
    """Tiny model in eval mode whose LocDiT output projection is random (not the zero init)."""
    return TESTER.get_model(**overrides)


def locdit_inputs(batch: int = 3, seed: int = 0):
    """x_t, t, LM output and history for direct LocDiT calls; history is fully valid, half valid and absent by row."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, P, D, generator=generator)
    t = torch.rand(batch, generator=generator)
    cond = torch.randn(batch, H, generator=generator)
    history = torch.randn(batch, K * P, D, generator=generator)
    history_mask = torch.ones(batch, K * P, dtype=torch.bool)
    history_mask[1, :P] = False
    history_mask[2] = False
    return x, t, cond, history, history_mask


class BatchSizeRecorder:
    def __init__(self, module: torch.nn.Module):
        self.sizes: list[int] = []
        self.handle = module.register_forward_pre_hook(lambda _, args: self.sizes.append(args[0].shape[0]))


# ----------------------------------------------------------------------------------------------------------------------
# forward / loss


def test_forward_outputs_have_documented_shapes():
    model = make_model(stop_loss_weight=0.5)
    inputs = TESTER.prepare_inputs()
    out = model(**inputs)
    num_patches = max(TESTER.frame_lengths) // P
    assert isinstance(out, DiTAROutput)
    assert out.stop_logits.shape == (2, 1 + num_patches)
    assert out.speech_hidden_states.shape == (2, 1 + num_patches, H)
    for name in ("loss", "diffusion_loss", "stop_loss"):
        assert out[name].dim() == 0 and bool(torch.isfinite(out[name])) and out[name] > 0
    torch.testing.assert_close(out.loss, out.diffusion_loss + 0.5 * out.stop_loss)


def record_locdit_calls(model) -> list:
    """Every later LocDiT call of `model` as (noisy, timestep, cond, history, history_mask, output)."""
    calls = []
    original_forward = model.locdit.forward

    def recording_forward(noisy, timestep, cond, history=None, history_mask=None):
        output = original_forward(noisy, timestep, cond, history, history_mask)
        calls.append((noisy, timestep, cond, history, history_mask, output))
        return output

    model.locdit.forward = recording_forward
    return calls


def test_training_losses_match_their_definition():
    """Record the single LocDiT call of the training forward and rebuild both losses from the definitions: patch i is
    predicted from the LM output one position earlier and its K previous clean patches, with a v-prediction target;
    the stop target is 1 at each row's last real patch."""
    model = make_model(stop_loss_weight=0.7)
    inputs = TESTER.prepare_inputs()  # 6 and 3 whole patches
    calls = record_locdit_calls(model)
    with torch.no_grad():
        out = model(**inputs)
    assert len(calls) == 1
    noisy, t, cond, history, history_mask, prediction = calls[0]
    counts = [6, 3]
    items = [(row, index) for row, count in enumerate(counts) for index in range(count)]
    patches = inputs["speech_features"][:, : 6 * P].reshape(2, 6, P, D)
    assert noisy.shape == (len(items), P, D) and t.shape == (len(items),)

    expected_cond = torch.stack([out.speech_hidden_states[row, index] for row, index in items])
    torch.testing.assert_close(cond, expected_cond)
    for item, (row, index) in enumerate(items):
        for slot in range(K):
            source = index - K + slot
            frames, valid = history[item, slot * P : (slot + 1) * P], history_mask[item, slot * P : (slot + 1) * P]
            if source >= 0:
                assert bool(valid.all()) and torch.equal(frames, patches[row, source])
            else:
                assert not bool(valid.any())

    x0 = torch.stack([patches[row, index] for row, index in items])
    alpha, sigma = torch.cos(t * math.pi / 2)[:, None, None], torch.sin(t * math.pi / 2)[:, None, None]
    noise = (noisy - alpha * x0) / sigma
    target = alpha * noise - sigma * x0
    torch.testing.assert_close(out.diffusion_loss, (prediction - target).pow(2).mean(), atol=1e-5, rtol=1e-3)

    stop_target = torch.zeros(2, 7)
    stop_target[0, 6], stop_target[1, 3] = 1.0, 1.0
    real = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out.stop_logits, stop_target, reduction="none")
    torch.testing.assert_close(out.stop_loss, bce[real].mean())
    torch.testing.assert_close(out.loss, out.diffusion_loss + 0.7 * out.stop_loss)


def test_diffusion_batch_mul_repeats_each_patch_with_its_own_noise_level_in_training_only():
    """diffusion_batch_mul R: in training LocDiT's one loss call holds every patch R times (same LM output, history
    and target, other noise levels), and the loss is the v-prediction MSE over all of them; eval mode draws one."""
    repeats, items = 3, 9  # 6 and 3 whole patches
    model = make_model(diffusion_batch_mul=repeats, cfg_dropout_prob=0.0)
    inputs = TESTER.prepare_inputs()
    patches = inputs["speech_features"][:, : 6 * P].reshape(2, 6, P, D)
    x0 = torch.cat([patches[0], patches[1, :3]])  # the 9 targets in loss order
    calls = record_locdit_calls(model)
    model.train()
    torch.manual_seed(0)
    out = model(**inputs)
    out.loss.backward()
    noisy, t, cond, history, history_mask, prediction = calls[0]
    assert noisy.shape == (repeats * items, P, D) and t.shape == (repeats * items,)
    for n in range(1, repeats):
        part = slice(n * items, (n + 1) * items)
        torch.testing.assert_close(cond[part], cond[:items])
        torch.testing.assert_close(history[part], history[:items])
        assert torch.equal(history_mask[part], history_mask[:items])
        assert not torch.equal(t[part], t[:items])
    alpha, sigma = torch.cos(t * math.pi / 2)[:, None, None], torch.sin(t * math.pi / 2)[:, None, None]
    target_x0 = x0.repeat(repeats, 1, 1)
    noise = (noisy - alpha * target_x0) / sigma
    target = alpha * noise - sigma * target_x0
    torch.testing.assert_close(out.diffusion_loss, (prediction - target).pow(2).mean(), atol=1e-5, rtol=1e-3)
    model.eval()
    with torch.no_grad():
        model(**inputs)
    assert calls[-1][0].shape == (items, P, D)


def test_shifted_time_keeps_the_ends_and_moves_the_middle_towards_noise_for_shifts_above_one():
    u = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    assert shifted_time(u, 1.0) is u
    shifted = shifted_time(u, 3.0)
    torch.testing.assert_close(shifted, torch.tensor([0.0, 0.25, 0.75, 27 / 28, 1.0]))
    torch.testing.assert_close(shifted_time(shifted, 1 / 3), u)  # s and 1/s undo each other


def test_diffusion_time_shift_draws_noisier_levels_in_training_only():
    """diffusion_time_shift s: in training LocDiT's noise levels are the uniform draw mapped through the time shift
    (the same torch.rand draw as without it, so s = 1 is the paper's loss bit for bit); eval mode draws uniformly, so
    validation losses stay comparable between models trained with different shifts."""
    inputs = TESTER.prepare_inputs()
    drawn = {}
    for shift in (1.0, 3.0):
        model = make_model(diffusion_time_shift=shift, cfg_dropout_prob=0.0)
        calls = record_locdit_calls(model)
        model.train()
        torch.manual_seed(0)
        model(**inputs)
        model.eval()
        torch.manual_seed(0)
        with torch.no_grad():
            model(**inputs)
        drawn[shift] = (calls[0][1], calls[-1][1])
    uniform, uniform_eval = drawn[1.0]
    torch.testing.assert_close(drawn[3.0][0], shifted_time(uniform, 3.0))
    assert drawn[3.0][0].mean() > uniform.mean()
    torch.testing.assert_close(drawn[3.0][1], uniform_eval)


def test_input_noise_reaches_the_backbone_inputs_only_and_only_in_training():
    """input_noise_std: the aggregation encoder (the backbone's input) reads noisy patches in training, at a level per
    row of at most input_noise_std; LocDiT's history stays the clean patches; eval mode reads clean patches."""
    model = make_model(input_noise_std=0.5, cfg_dropout_prob=0.0)
    inputs = TESTER.prepare_inputs()  # 6 and 3 whole patches
    patches = inputs["speech_features"][:, : 6 * P].reshape(2, 6, P, D)
    seen = {}
    model.aggregation_encoder.register_forward_pre_hook(lambda _, args: seen.__setitem__("encoder", args[0].clone()))
    original_forward = model.locdit.forward

    def recording_forward(noisy, timestep, cond, history=None, history_mask=None):
        seen["history"], seen["history_mask"] = history, history_mask
        return original_forward(noisy, timestep, cond, history, history_mask)

    model.locdit.forward = recording_forward
    model.train()
    torch.manual_seed(0)
    model(**inputs).loss.backward()
    difference = seen["encoder"][:, :6] - patches
    row_std = difference.flatten(1).std(dim=1)
    assert bool((row_std > 0).all()) and bool((row_std < 0.5 * 1.3).all())
    # the last item of row 0 (patch 5) has patches 3 and 4 as its clean history
    torch.testing.assert_close(seen["history"][5], patches[0, 3:5].flatten(0, 1))
    model.eval()
    with torch.no_grad():
        model(**inputs)
    torch.testing.assert_close(seen["encoder"][:, :6], patches)


def test_scheduled_sampling_feeds_the_backbone_its_own_samples_in_training_only():
    """scheduled_sampling_prob: a first pass reads the real patches; the second (the one with gradients) reads some
    of them replaced by LocDiT's samples from that pass's outputs; LocDiT's history and the targets stay real; eval
    mode reads the real patches once."""
    model = make_model(scheduled_sampling_prob=1.0, cfg_dropout_prob=0.0)
    inputs = TESTER.prepare_inputs()  # 6 and 3 whole patches
    patches = inputs["speech_features"][:, : 6 * P].reshape(2, 6, P, D)
    real = torch.zeros(2, 6, dtype=torch.bool)
    real[0], real[1, :3] = True, True
    seen = {"encoder": []}
    model.aggregation_encoder.register_forward_pre_hook(lambda _, args: seen["encoder"].append(args[0].clone()))
    original_forward = model.locdit.forward

    def recording_forward(*args, **kwargs):
        if torch.is_grad_enabled():  # the loss's LocDiT call (noisy, timestep, cond, history, ...), not the sampler's
            seen["history"] = args[3]
        return original_forward(*args, **kwargs)

    model.locdit.forward = recording_forward
    model.train()
    torch.manual_seed(1)
    model(**inputs).loss.backward()
    first, second = seen["encoder"]
    torch.testing.assert_close(first[:, :6], patches)  # the first pass reads the real speech
    changed = (second[:, :6] - patches).flatten(2).abs().amax(-1) > 0  # [2, 6]
    assert bool(changed.any()) and not bool(changed[~real].any())  # only real patches are replaced
    assert bool((second[:, :6][changed] - patches[changed]).abs().amax() < 20)  # samples, not garbage
    torch.testing.assert_close(second[:, :6][~changed], patches[~changed])
    torch.testing.assert_close(seen["history"][5], patches[0, 3:5].flatten(0, 1))  # LocDiT's history stays real
    assert all(p.grad is not None for p in model.aggregation_encoder.parameters() if p.requires_grad)
    seen["encoder"].clear()
    model.eval()
    with torch.no_grad():
        model(**inputs)
    assert len(seen["encoder"]) == 1
    torch.testing.assert_close(seen["encoder"][0][:, :6], patches)


def test_return_dict_false_returns_the_dataclass_fields_as_a_tuple():
    model = make_model().train()
    inputs = TESTER.prepare_inputs()
    as_dict = seeded(lambda: model(**inputs), 3)
    as_tuple = seeded(lambda: model(**inputs, return_dict=False), 3)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(OUTPUT_FIELDS)
    for value, name in zip(as_tuple, OUTPUT_FIELDS, strict=True):
        assert torch.equal(value, as_dict[name]), name
    model.config.return_dict = False
    assert isinstance(seeded(lambda: model(**inputs), 3), tuple)


def test_forward_batch_of_one_matches_the_padded_batch_row():
    model = make_model()
    inputs = TESTER.prepare_inputs()
    with torch.no_grad():
        batch = model(**inputs)
        for row in range(2):
            single = model(**select_row(inputs, row))
            real = single.stop_logits.shape[1]  # start-of-speech + this row's real patches
            torch.testing.assert_close(batch.stop_logits[row, :real], single.stop_logits[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(
                batch.speech_hidden_states[row, :real], single.speech_hidden_states[0], atol=1e-5, rtol=0
            )


def test_an_eval_mode_loss_is_the_same_each_time_and_leaves_the_global_generator_alone():
    """Transformers' `Trainer.evaluate()` on the same weights returned another eval_loss each call (noise levels and
    noise came from the global generator), which `load_best_model_at_end` then compares; in train mode every call still
    draws new ones."""
    model = make_model().eval()
    inputs = TESTER.prepare_inputs()
    with torch.no_grad():
        state = torch.get_rng_state()
        first = model(**inputs).diffusion_loss
        assert torch.equal(torch.get_rng_state(), state)
        torch.testing.assert_close(model(**inputs).diffusion_loss, first, atol=0, rtol=0)
        model.train()
        assert not torch.equal(model(**inputs).diffusion_loss, model(**inputs).diffusion_loss)


def test_padded_and_trailing_frames_do_not_change_the_loss():
    model = make_model().train()
    base = TESTER.prepare_inputs()  # 12 and 7 real frames (6 and 3 whole patches; row 1's 7th frame is a remainder)
    generator = torch.Generator().manual_seed(9)
    # Same whole patches, but: 15 frames (T mod P != 0), row 0 gets a 13th "real" frame that cannot fill a patch,
    # row 1's remainder frame changes, and every padded position holds large garbage.
    features = torch.randn(2, 15, D, generator=generator) * 10
    mask = torch.zeros(2, 15, dtype=torch.long)
    mask[0, :13], mask[1, :7] = 1, 1
    features[0, :12] = base["speech_features"][0, :12]
    features[1, :6] = base["speech_features"][1, :6]
    padded = dict(base, speech_features=features, speech_attention_mask=mask)
    reference = seeded(lambda: model(**base), 5)
    garbage = seeded(lambda: model(**padded), 5)
    for name in ("loss", "diffusion_loss", "stop_loss"):
        torch.testing.assert_close(garbage[name], reference[name], atol=1e-6, rtol=0)
    # the comparison is sensitive: changing one real frame changes the loss under the same seed
    changed = copy.deepcopy(base)
    changed["speech_features"][1, 3] += 1.0
    assert (seeded(lambda: model(**changed), 5).loss - reference.loss).abs() > 1e-5


@pytest.mark.parametrize("real_frames", [0, 1])
def test_rows_with_fewer_than_patch_size_real_frames_raise(real_frames):
    model = make_model()
    inputs = TESTER.prepare_inputs()
    inputs["speech_attention_mask"][1] = 0
    inputs["speech_attention_mask"][1, :real_frames] = 1
    with pytest.raises(ValueError, match=r"rows \[1\] have fewer than patch_size=2 real frames"):
        model(**inputs)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda b: b.update(speech_features=b["speech_features"][..., :5]), "feature_dim"),
        (lambda b: b.update(speech_features=b["speech_features"][:1], speech_attention_mask=None), "batch size"),
        (lambda b: b.update(speech_attention_mask=b["speech_attention_mask"][:, :3]), "speech_attention_mask"),
        (lambda b: b.update(attention_mask=b["attention_mask"][:, :2]), "attention_mask"),
        (lambda b: b.update(speech_features=b["speech_features"][0]), "speech_features"),
    ],
)
def test_forward_rejects_malformed_inputs(change, match):
    inputs = TESTER.prepare_inputs()
    change(inputs)
    with pytest.raises(ValueError, match=match):
        make_model()(**inputs)


def test_feature_normalisation_uses_the_config_statistics():
    mean, std = [0.5 * i for i in range(D)], [1.0 + 0.5 * i for i in range(D)]
    model = make_model(feature_mean=mean, feature_std=std)
    raw = torch.randn(2, 5, D)
    normalised = model.normalize_features(raw)
    torch.testing.assert_close(normalised, (raw - torch.tensor(mean)) / torch.tensor(std))
    torch.testing.assert_close(model.denormalize_features(normalised), raw)
    plain = make_model()
    assert torch.equal(plain.normalize_features(raw), raw) and torch.equal(plain.denormalize_features(raw), raw)


def test_a_training_step_on_raw_features_or_in_eval_mode_is_warned_about(caplog):
    """A hand-written loop that feeds raw log-mel (not `normalize_features`) or trains a model left in eval mode
    (`from_pretrained` returns it so) trains another model without an error: both are warned about, once; normalised
    features in train mode, and validation without gradients, say nothing. A trainable candidate LocDiT (forward
    never trains it; multi-process training refuses it) is named too."""
    import logging

    from modeling_ditar.modeling_ditar import logger

    mean, std = [-4.0 - 0.3 * i for i in range(D)], [2.0] * D
    model = make_model(feature_mean=mean, feature_std=std).train()
    inputs = TESTER.prepare_inputs()  # standard normal frames: normalised features
    raw = {**inputs, "speech_features": model.denormalize_features(inputs["speech_features"])}
    logger.warning_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        model(**inputs)
        with torch.no_grad():
            model.eval()(**raw)
        assert caplog.text == ""
        model.train()(**raw)
        assert "speech_features look un-normalised" in caplog.text and "model.normalize_features" in caplog.text
        model.eval()(**inputs)
        assert "while the model is in eval mode" in caplog.text and "call model.train()" in caplog.text
    caplog.clear()
    with_candidate = make_model(feature_mean=mean, feature_std=std, candidate_locdit=True).train()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        with_candidate.candidate_locdit.requires_grad_(False)
        with_candidate(**inputs)
        assert caplog.text == ""
        with_candidate.candidate_locdit.requires_grad_(True)
        with_candidate(**inputs)
        assert "carries a candidate LocDiT" in caplog.text and "candidate_locdit=False" in caplog.text


def test_training_positions_past_the_backbone_are_warned_about(caplog):
    """A training row longer than the backbone's `max_position_embeddings` trains positions generation never reaches
    (it refuses or shortens such a text): warned about once; rows that fit, and validation, say nothing. The tester's
    longest row takes positions 0-13 (7 text tokens, start of speech, 6 patches)."""
    import logging

    from modeling_ditar.modeling_ditar import logger

    inputs = TESTER.prepare_inputs()
    text_config = {**TEXT_CONFIGS["qwen2"]}
    fits = make_model(text_config={**text_config, "max_position_embeddings": 14}).train()
    too_short = make_model(text_config={**text_config, "max_position_embeddings": 13}).train()
    logger.warning_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        fits(**inputs)
        with torch.no_grad():
            too_short(**inputs)
        assert caplog.text == ""
        too_short(**inputs)
        assert "past the backbone's max_position_embeddings (13)" in caplog.text
        assert "raise config.text_config.max_position_embeddings" in caplog.text


# ----------------------------------------------------------------------------------------------------------------------
# gradients, initialisation, checkpointing


@pytest.mark.parametrize("backbone", ["qwen2", "llama"])
def test_every_trainable_parameter_gets_a_finite_nonzero_gradient(backbone):
    tester = DiTARModelTester(backbone=backbone)
    model = tester.get_model().train()  # out_proj re-initialised: at its zero init every upstream gradient is 0
    inputs = tester.prepare_inputs()
    model(**inputs).loss.backward()
    # The key bias of diffusers' attention adds q.b_k to every score of a query, which softmax ignores: its gradient
    # is 0 in exact arithmetic (the backbone's k_proj bias is rotated by RoPE per position, so it does learn).
    exempt = ("attn1.to_k.bias",)
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad, name
        assert parameter.grad is not None, f"{name} got no gradient"
        assert bool(torch.isfinite(parameter.grad).all()), f"{name} has a non-finite gradient"
        if not name.endswith(exempt):
            assert parameter.grad.abs().max() > 1e-8, f"{name} has an all-zero gradient"
    # text embeddings: rows of the real tokens learn, padded tokens (id 0 here) and unused ids do not
    embedding_grad = model.get_input_embeddings().weight.grad
    used = torch.zeros(embedding_grad.shape[0], dtype=torch.bool)
    used[inputs["input_ids"][inputs["attention_mask"].bool()]] = True
    assert bool((embedding_grad[used].abs().sum(-1) > 0).all())
    assert bool((embedding_grad[~used] == 0).all())


def test_fresh_model_locdit_predicts_exactly_zero_velocity():
    torch.manual_seed(0)
    model = DiTARForConditionalGeneration(TESTER.get_config()).eval()
    assert torch.equal(model.locdit.out_proj.weight, torch.zeros_like(model.locdit.out_proj.weight))
    x, t, cond, history, history_mask = locdit_inputs()
    with torch.no_grad():
        assert torch.equal(model.locdit(x, t, cond, history, history_mask), torch.zeros(3, P, D))
    # only the output projection is zero: everything else got its random initialisation
    for parameter in (
        model.speech_start_embedding,
        model.aggregation_encoder.special_token,
        model.locdit.transformer.position_embedding,
        model.aggregation_encoder.transformer.position_embedding,
        model.locdit.in_proj.weight,
    ):
        assert 0.005 < parameter.std().item() < 0.2


def test_locdit_ignores_masked_history_frames():
    model = make_model()
    x, t, cond, history, history_mask = locdit_inputs()
    with torch.no_grad():
        reference = model.locdit(x, t, cond, history, history_mask)
        masked_changed = history.clone()
        masked_changed[~history_mask] = 100.0
        torch.testing.assert_close(model.locdit(x, t, cond, masked_changed, history_mask), reference, atol=1e-5, rtol=0)
        visible_changed = history.clone()
        visible_changed[0] += 1.0  # row 0's history is fully visible
        changed = model.locdit(x, t, cond, visible_changed, history_mask)
    assert (changed[0] - reference[0]).abs().max() > 1e-4
    torch.testing.assert_close(changed[1:], reference[1:], atol=1e-5, rtol=0)
    # the output depends on the diffusion time and on the LM output
    with torch.no_grad():
        assert (model.locdit(x, 1.0 - t, cond, history, history_mask) - reference).abs().max() > 1e-3
        assert (model.locdit(x, t, 2 * cond, history, history_mask) - reference).abs().max() > 1e-3
    # at the ends of the schedule the output stays finite
    with torch.no_grad():
        for time in (0.0, 1.0):
            assert bool(torch.isfinite(model.locdit(x, torch.full((3,), time), cond, history, history_mask)).all())


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    reference = make_model().train()
    checkpointed = copy.deepcopy(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the non-deprecated entry point, no warning
        checkpointed.activation_checkpointing_enable()
    stacks = [module for module in checkpointed.modules() if isinstance(module, DiTARTransformerStack)]
    assert len(stacks) == 2 and all(stack.gradient_checkpointing for stack in stacks)
    calls = []
    for stack in stacks:
        original = stack._gradient_checkpointing_func

        def counting(*args, _original=original, **kwargs):
            calls.append(1)
            return _original(*args, **kwargs)

        stack._gradient_checkpointing_func = counting

    inputs = TESTER.prepare_inputs()
    loss_ref = seeded(lambda: reference(**inputs).loss, 4)
    loss_ckpt = seeded(lambda: checkpointed(**inputs).loss, 4)
    loss_ref.backward()
    loss_ckpt.backward()
    assert len(calls) > 0  # our own blocks were really checkpointed
    torch.testing.assert_close(loss_ckpt, loss_ref, atol=1e-6, rtol=0)
    grads_ckpt = dict(checkpointed.named_parameters())
    for name, parameter in reference.named_parameters():
        torch.testing.assert_close(grads_ckpt[name].grad, parameter.grad, atol=1e-6, rtol=1e-5, msg=name)


# ----------------------------------------------------------------------------------------------------------------------
# persistence and attention backends


@pytest.mark.parametrize("loader", [DiTARForConditionalGeneration, AutoModel], ids=["class", "auto"])
def test_save_and_reload_gives_identical_loss_and_generation(loader, tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))

    loaded, info = loader.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is DiTARForConditionalGeneration
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    # the zero-init of LocDiT's output projection must not overwrite loaded weights
    assert loaded.locdit.out_proj.weight.abs().max() > 0
    loaded_state = loaded.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded_state[name], tensor), name

    inputs = TESTER.prepare_inputs()
    model.train(), loaded.train()
    assert torch.equal(seeded(lambda: model(**inputs).loss, 2), seeded(lambda: loaded(**inputs).loss, 2))
    model.eval(), loaded.eval()
    gen_inputs = TESTER.prepare_generation_inputs()

    def generate(m):
        return m.generate(**gen_inputs, max_new_patches=3, temperature=0.7, generator=torch.Generator().manual_seed(1))

    a, b = generate(model), generate(loaded)
    assert torch.equal(a.features, b.features) and torch.equal(a.lengths, b.lengths)


def test_auto_model_from_config_builds_ditar():
    model = AutoModel.from_config(TESTER.get_config())
    assert type(model) is DiTARForConditionalGeneration


def test_sdpa_and_eager_attention_agree(tmp_path):
    make_model().save_pretrained(tmp_path)
    models = {}
    for implementation in ("sdpa", "eager"):
        models[implementation] = DiTARForConditionalGeneration.from_pretrained(
            tmp_path, attn_implementation=implementation
        ).eval()
        assert models[implementation].language_model.config._attn_implementation == implementation
    inputs, gen_inputs = TESTER.prepare_inputs(), TESTER.prepare_generation_inputs()
    outputs = {}
    with torch.no_grad():
        for name, model in models.items():
            set_stop_logit(model, -30.0)
            outputs[name] = (model(**inputs), model.generate(**gen_inputs, max_new_patches=3, temperature=0.0))
    (fwd_sdpa, gen_sdpa), (fwd_eager, gen_eager) = outputs["sdpa"], outputs["eager"]
    torch.testing.assert_close(fwd_eager.speech_hidden_states, fwd_sdpa.speech_hidden_states, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gen_eager.features, gen_sdpa.features, atol=1e-4, rtol=1e-4)


def test_bfloat16_forward_and_generate_are_finite():
    model = make_model().to(torch.bfloat16).train()
    out = model(**TESTER.prepare_inputs())
    assert bool(torch.isfinite(out.loss)) and bool(torch.isfinite(out.stop_logits).all())
    out.loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    model.eval()
    generated = model.generate(
        **TESTER.prepare_generation_inputs(),
        max_new_patches=2,
        temperature=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    assert generated.features.dtype == torch.bfloat16
    assert bool(torch.isfinite(generated.features.float()).all()) and generated.features.abs().max() > 0


@pytest.mark.parametrize("backbone", ["qwen2", "llama"])
def test_backbone_trains_and_generates(backbone):
    tester = DiTARModelTester(backbone=backbone)
    model = tester.get_model().train()
    assert model.language_model.config.model_type == backbone
    inputs = tester.prepare_inputs()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = seeded(lambda: model(**inputs).loss.item(), 0)
    for step in range(5):
        loss = seeded(lambda: model(**inputs).loss, 10 + step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = seeded(lambda: model(**inputs).loss.item(), 0)
    assert after < 0.8 * before
    model.eval()
    generated = model.generate(**tester.prepare_generation_inputs(), max_new_patches=2)
    assert generated.features.shape[0] == 2 and generated.features.shape[2] == D
    assert generated.features.shape[1] in (P, 2 * P)
    assert bool(torch.isfinite(generated.features).all())


# ----------------------------------------------------------------------------------------------------------------------
# generation: caching, determinism, batching


@pytest.mark.parametrize("left_pad", [False, True], ids=["right-padded-text", "left-padded-text"])
def test_kv_cached_generation_matches_recomputation(left_pad):
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_generation_inputs(left_pad=left_pad)  # text 7/4 tokens, prompt 3/1 whole patches
    cached = model.generate(**inputs, max_new_patches=4, temperature=0.0, use_cache=True)
    recomputed = model.generate(**inputs, max_new_patches=4, temperature=0.0, use_cache=False)
    assert cached.features.shape == (2, 4 * P, D)
    assert cached.features.abs().mean() > 0.05
    torch.testing.assert_close(cached.features, recomputed.features, atol=1e-5, rtol=0)
    assert torch.equal(cached.lengths, recomputed.lengths)


@pytest.mark.parametrize("left_pad", [False, True], ids=["right-padded-text", "left-padded-text"])
def test_batch_of_one_matches_the_padded_batch_row(left_pad):
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_generation_inputs(left_pad=left_pad)
    deterministic = model.generate(**inputs, max_new_patches=3, temperature=0.0)
    sampled = model.generate(**inputs, max_new_patches=3, temperature=1.0, generator=generators([5, 6]))
    assert (deterministic.features[0] - deterministic.features[1]).abs().max() > 1e-3
    for row in range(2):
        single = select_row(inputs, row)
        alone = model.generate(**single, max_new_patches=3, temperature=0.0)
        torch.testing.assert_close(alone.features[0], deterministic.features[row], atol=1e-5, rtol=0)
        alone = model.generate(**single, max_new_patches=3, temperature=1.0, generator=generators([5 + row]))
        torch.testing.assert_close(alone.features[0], sampled.features[row], atol=1e-5, rtol=0)


def test_temperature_zero_is_deterministic_regardless_of_the_generator():
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_generation_inputs()
    outputs = [
        model.generate(**inputs, max_new_patches=3, temperature=0.0, generator=generator).features
        for generator in (None, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1), generators([2, 3]))
    ]
    for other in outputs[1:]:
        assert torch.equal(outputs[0], other)


def test_same_seed_reproduces_and_different_seeds_differ_at_temperature_one():
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_generation_inputs()

    def run(seed):
        return model.generate(
            **inputs, max_new_patches=3, temperature=1.0, generator=torch.Generator().manual_seed(seed)
        ).features

    assert torch.equal(run(0), run(0))
    assert (run(0) - run(1)).abs().max() > 1e-3


# ----------------------------------------------------------------------------------------------------------------------
# LM guidance


def test_guidance_one_is_the_conditional_locdit_call():
    model = make_model()
    x, t, cond, history, history_mask = locdit_inputs()
    recorder = BatchSizeRecorder(model.locdit)
    with torch.no_grad():
        guided = guided_velocity(model.locdit, cond, history, history_mask, 1.0)(x, t)
        assert recorder.sizes == [3]  # no packed unconditional branch
        conditional = model.locdit(x, t, cond, history, history_mask)
        unconditional = model.locdit(x, t, torch.zeros_like(cond), history, history_mask)
    torch.testing.assert_close(guided, conditional, atol=1e-6, rtol=0)
    assert (conditional - unconditional).abs().max() > 1e-3  # the LM output matters, so the check means something


def test_guidance_zero_is_the_unconditional_locdit_call():
    model = make_model()
    x, t, cond, history, history_mask = locdit_inputs()
    with torch.no_grad():
        guided = guided_velocity(model.locdit, cond, history, history_mask, 0.0)(x, t)
        unconditional = model.locdit(x, t, torch.zeros_like(cond), history, history_mask)
    torch.testing.assert_close(guided, unconditional, atol=1e-6, rtol=0)


@pytest.mark.parametrize("with_history", [True, False])
def test_packed_guidance_equals_two_separate_calls(with_history):
    model = make_model()
    x, t, cond, history, history_mask = locdit_inputs()
    if not with_history:
        history = history_mask = None
    recorder = BatchSizeRecorder(model.locdit)
    with torch.no_grad():
        guided = guided_velocity(model.locdit, cond, history, history_mask, 2.5)(x, t)
        assert recorder.sizes == [6]  # cond and uncond in one LocDiT batch
        v_cond = model.locdit(x, t, cond, history, history_mask)
        v_uncond = model.locdit(x, t, torch.zeros_like(cond), history, history_mask)
    torch.testing.assert_close(guided, v_uncond + 2.5 * (v_cond - v_uncond), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("guidance", [1.0, 2.5])
@pytest.mark.parametrize("prompt_patches", [0, 2])
def test_generation_matches_a_reference_built_from_the_training_forward(guidance, prompt_patches):
    """Generation (left-padded, KV-cached) must reproduce: the LM output of the teacher-forced training forward at the
    current position, the last K patches as history, and the per-patch ODE solve."""
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_inputs()  # right-padded text of 7 and 4 tokens
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    prompt = torch.randn(2, prompt_patches * P, D, generator=torch.Generator().manual_seed(4))
    kwargs = {"prompt_features": prompt} if prompt_patches else {}
    steps, new_patches = 3, 3
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_patches=new_patches,
        temperature=0.0,
        guidance_scale=guidance,
        num_inference_steps=steps,
        **kwargs,
    )

    expected = generation_reference_from_forward(model, ids, mask, prompt, new_patches, steps, guidance)
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# stopping and bounds


def test_max_new_patches_is_respected_and_reported_when_nothing_stops():
    model = make_model(stop_threshold=0.999)
    out = model.generate(
        **TESTER.prepare_generation_inputs(),
        max_new_patches=3,
        temperature=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.features.shape == (2, 3 * P, D)
    assert out.lengths.tolist() == [3 * P, 3 * P]
    assert out.stopped.tolist() == [False, False]
    assert bool((out.features.abs().sum(-1) > 0).all())


def test_a_confident_stop_head_ends_every_row_after_one_patch():
    model = make_model()
    set_stop_logit(model, 30.0)
    steps = []
    out = model.generate(**TESTER.prepare_generation_inputs(), max_new_patches=5, patch_callback=steps.append)
    assert len(steps) == 1
    assert out.features.shape == (2, P, D)
    assert out.lengths.tolist() == [P, P]
    assert out.stopped.tolist() == [True, True]


def test_rows_stop_independently():
    model = make_model()
    inputs = TESTER.prepare_generation_inputs()
    set_stop_logit(model, -30.0)
    free = model.generate(**inputs, max_new_patches=3, temperature=0.0)

    model.stop_head = ScriptedStopHead([1, None])  # row 0 stops after its first patch, row 1 never
    out = model.generate(**inputs, max_new_patches=3, temperature=0.0)
    assert out.lengths.tolist() == [P, 3 * P]
    assert out.stopped.tolist() == [True, False]
    assert torch.equal(out.features[0, P:], torch.zeros(2 * P, D))
    assert bool((out.features[1].abs().sum(-1) > 0).all())
    # stopping one row changes nothing in the rows that go on, nor in what the stopped row produced before
    torch.testing.assert_close(out.features[1], free.features[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.features[0, :P], free.features[0, :P], atol=1e-6, rtol=0)

    model.stop_head = ScriptedStopHead([2, 3])
    out = model.generate(**inputs, max_new_patches=5, temperature=0.0)
    assert model.stop_head.calls == 3  # the loop ends as soon as every row is finished
    assert out.lengths.tolist() == [2 * P, 3 * P]
    assert out.stopped.tolist() == [True, True]
    assert out.features.shape == (2, 3 * P, D)

    model.stop_head = ScriptedStopHead([3, None])  # row 0's stop coincides with the bound: the stop head ended it
    out = model.generate(**inputs, max_new_patches=3, temperature=0.0)
    assert out.lengths.tolist() == [3 * P, 3 * P]
    assert out.stopped.tolist() == [True, False]


def test_default_max_new_patches_is_bounded_and_grows_with_text_length():
    model = make_model(max_patches_per_text_token=1.5, min_max_new_patches=2)
    lengths = torch.tensor([1, 2, 4, 100])
    limits = model.default_max_new_patches(lengths)
    assert limits.tolist() == [math.ceil(1.5 * n) + 2 for n in lengths.tolist()]
    assert bool((limits[1:] > limits[:-1]).all())

    # generate applies it per row: text of 3 and 1 tokens -> 4 and 2 patches with ratio 1 and minimum 1
    tester = DiTARModelTester(text_lengths=(3, 1), max_patches_per_text_token=1.0, min_max_new_patches=1)
    model = tester.get_model()
    set_stop_logit(model, -30.0)
    inputs = tester.prepare_generation_inputs()
    del inputs["prompt_features"], inputs["prompt_attention_mask"]
    out = model.generate(**inputs, temperature=0.0)
    assert out.lengths.tolist() == [4 * P, 2 * P]
    assert out.stopped.tolist() == [False, False]
    assert out.features.shape == (2, 4 * P, D)
    assert torch.equal(out.features[1, 2 * P :], torch.zeros(2 * P, D))  # zero past the row's length
    assert bool((out.features[0].abs().sum(-1) > 0).all()) and bool((out.features[1, : 2 * P].abs().sum(-1) > 0).all())
    # a row ended by its bound stays "not stopped" even if the stop head fires while other rows go on
    model.stop_head = ScriptedStopHead([None, 3])
    out = model.generate(**inputs, temperature=0.0)
    assert out.lengths.tolist() == [4 * P, 2 * P]
    assert out.stopped.tolist() == [False, False]


def test_patch_callback_is_called_once_per_patch():
    model = make_model()
    model.stop_head = ScriptedStopHead([1, None])
    steps = []
    out = model.generate(
        **TESTER.prepare_generation_inputs(), max_new_patches=3, temperature=0.0, patch_callback=steps.append
    )
    assert [step.index for step in steps] == [0, 1, 2]
    assert all(step.patch.shape == (2, P, D) for step in steps)
    assert [step.active.tolist() for step in steps] == [[True, True], [False, True], [False, True]]
    assert steps[-1].finished.tolist() == [True, True] and steps[-1].stopped.tolist() == [True, False]
    rebuilt = torch.cat([step.patch * step.active[:, None, None] for step in steps], dim=1)
    assert torch.equal(rebuilt, out.features)


# ----------------------------------------------------------------------------------------------------------------------
# input validation


@pytest.mark.parametrize(
    "change, match",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 1.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_inference_steps": 2.5}, "num_inference_steps"),
        ({"max_new_patches": 0}, "max_new_patches"),
        ({"max_new_patches": 1.5}, "max_new_patches"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"guidance_scale": float("inf")}, "guidance_scale"),
        ({"prompt_features": torch.zeros(3, 4, D)}, "prompt_features"),
        ({"prompt_features": torch.zeros(2, 4, D + 1)}, "feature_dim"),
        ({"prompt_features": torch.full((2, 4, D), float("nan"))}, "NaN"),
        ({"prompt_features": torch.zeros(2, 4)}, "prompt_features"),
        ({"prompt_attention_mask": torch.ones(2, 3)}, "prompt_attention_mask"),
        ({"attention_mask": torch.ones(2, 3)}, "attention_mask"),
        ({"attention_mask": torch.tensor([[1] * 7, [0] * 7])}, "attention_mask"),
        ({"input_ids": torch.ones(7, dtype=torch.long)}, "input_ids"),
        ({"generator": generators([0, 1, 2])}, "generator"),
    ],
)
def test_generate_rejects_bad_arguments(change, match):
    model = make_model()
    inputs = TESTER.prepare_generation_inputs()
    inputs.update(change)
    max_new_patches = inputs.pop("max_new_patches", 1)
    with pytest.raises(ValueError, match=match):
        model.generate(**inputs, max_new_patches=max_new_patches)


def test_prompt_attention_mask_without_prompt_features_is_rejected():
    inputs = TESTER.prepare_generation_inputs()
    del inputs["prompt_features"]
    with pytest.raises(ValueError, match="prompt_attention_mask"):
        make_model().generate(**inputs, max_new_patches=1)


# ----------------------------------------------------------------------------------------------------------------------
# overfitting a tiny batch


OVERFIT_STEPS = 400


def sinusoid_batch(lengths=(20, 16), frequencies=(1.0, 1.5)):
    """Smooth, learnable targets: per-row frequency, per-channel phase, right-padded."""
    num_frames = max(lengths)
    features = torch.zeros(len(lengths), num_frames, D)
    mask = torch.zeros(len(lengths), num_frames, dtype=torch.long)
    for row, (length, frequency) in enumerate(zip(lengths, frequencies, strict=True)):
        frames = torch.arange(length, dtype=torch.float32)[:, None]
        phases = torch.arange(D, dtype=torch.float32)[None] / D
        features[row, :length] = torch.sin(2 * math.pi * (frequency * frames / length + phases))
        mask[row, :length] = 1
    input_ids = torch.tensor([[5, 9, 13, 17], [22, 30, 41, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "speech_features": features,
        "speech_attention_mask": mask,
    }


@pytest.fixture(scope="module")
def overfitted():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = TESTER.get_model(seed=0, randomize_locdit_output=False, cfg_dropout_prob=0.05).train()
        batch = sinusoid_batch()
        draws = 8  # every row repeated: the loss averages 8 noise draws per patch, which keeps the curve smooth
        repeated = {key: value.repeat(draws, *([1] * (value.dim() - 1))) for key, value in batch.items()}
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)

        def schedule(step):  # 20 warm-up steps, then cosine decay to 10%
            return min(1.0, (step + 1) / 20) * (0.1 + 0.45 * (1 + math.cos(math.pi * step / OVERFIT_STEPS)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        torch.manual_seed(0)
        losses = []
        for _ in range(OVERFIT_STEPS):
            loss = model(**repeated).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        model.eval()
        yield model, batch, losses
    finally:
        torch.set_num_threads(previous)


def test_overfitting_one_batch_reduces_the_loss_tenfold(overfitted):
    _, _, losses = overfitted
    assert all(math.isfinite(loss) for loss in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first / last >= 10.0, f"loss went from {first:.3f} to {last:.3f} only"


def test_overfitted_model_continues_the_target_and_stops_on_time(overfitted):
    model, batch, _ = overfitted
    prompt_patches = 4
    prompt = batch["speech_features"][:, : prompt_patches * P]
    out = model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        prompt_features=prompt,
        temperature=0.0,
        guidance_scale=1.0,
        num_inference_steps=10,
        max_new_patches=12,
    )
    expected_lengths = [int(n) - prompt_patches * P for n in batch["speech_attention_mask"].sum(1)]
    assert out.lengths.tolist() == expected_lengths  # 12 and 8 frames: the stop head learned where each row ends
    assert out.stopped.tolist() == [True, True]
    for row, length in enumerate(expected_lengths):
        target = batch["speech_features"][row, prompt_patches * P : prompt_patches * P + length]
        error = (out.features[row, :length] - target).pow(2).mean()
        assert error < 0.25 * target.var(), f"row {row}: mse {error:.3f} vs variance {target.var():.3f}"


def test_no_history_model_trains_and_generates():
    """num_history_patches = 0 (the paper's history ablation): LocDiT sees only the LM output and the noisy patch."""
    model = make_model(num_history_patches=0).train()
    out = model(**TESTER.prepare_inputs())
    assert bool(torch.isfinite(out.loss))
    out.loss.backward()
    model.eval()
    generated = model.generate(
        **TESTER.prepare_generation_inputs(),
        max_new_patches=3,
        temperature=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    assert bool(torch.isfinite(generated.features).all()) and generated.features.abs().max() > 0
