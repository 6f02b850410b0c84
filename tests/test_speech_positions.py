"""Config `speech_positions="aligned"`: text tokens at 0..L-1 and the speech slot after j patches at j * patch_size * r
(r = text tokens per feature frame). Config validation, position ids of the merged sequence, the training forward,
generation (cache, batching, reference built from the forward, pruning), rate validation, and the rate given by the
processor, the training collator and the pipeline. Every test uses the tiny configs of `model_helpers` and
`pipeline_helpers`."""

import copy

import pytest
import torch
from model_helpers import (
    DiTARModelTester,
    ScriptedStopHead,
    generation_reference_from_forward,
    generators,
    seeded,
    select_row,
    set_stop_logit,
)
from pipeline_helpers import HOP, SR, get_dummy_inputs, get_dummy_pipeline, get_dummy_processor, tone

from modeling_ditar import DiTARConfig, DiTARForConditionalGeneration
from modeling_ditar.speech_positions import jitter_rate
from modeling_ditar.training_data import Utterance, collate_examples

TESTER = DiTARModelTester()
P, D, K, H = TESTER.patch_size, TESTER.feature_dim, TESTER.num_history_patches, 32
RATES = torch.tensor([0.3, 0.55])  # per-row text tokens per frame for the 2-row batches of TESTER


def make_model(**overrides) -> DiTARForConditionalGeneration:
    """Tiny eval-mode model with "aligned" speech positions (random LocDiT output projection)."""
    overrides.setdefault("speech_positions", "aligned")
    return TESTER.get_model(**overrides)


class PositionRecorder:
    """Records the position_ids of every backbone call."""

    def __init__(self, model):
        self.calls: list[torch.Tensor] = []
        self.handle = model.language_model.register_forward_pre_hook(
            lambda _, args, kwargs: self.calls.append(kwargs["position_ids"].clone()), with_kwargs=True
        )

    def remove(self):
        self.handle.remove()


def same_weights(a, b) -> bool:
    a, b = a.state_dict(), b.state_dict()
    return list(a) == list(b) and all(torch.equal(a[key], b[key]) for key in a)


def expected_forward_positions(text_len: int, num_slots: int, rate: float) -> torch.Tensor:
    """Real columns of one training row: text 0..L-1, then start-of-speech and the N patches at j * P * rate."""
    return torch.cat([torch.arange(text_len).float(), torch.arange(num_slots).float() * P * rate])


# ----------------------------------------------------------------------------------------------------------------------
# config


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"speech_positions": "foo"}, "speech_positions"),
        ({"speech_positions": "Aligned"}, "speech_positions"),
        ({"text_tokens_per_frame": 0.0}, "text_tokens_per_frame"),
        ({"text_tokens_per_frame": -0.25}, "text_tokens_per_frame"),
        ({"text_tokens_per_frame": float("inf")}, "text_tokens_per_frame"),
        ({"text_tokens_per_frame": float("nan")}, "text_tokens_per_frame"),
        ({"speech_position_jitter": -0.1}, "speech_position_jitter"),
        ({"speech_position_jitter": 1.5}, "speech_position_jitter"),
        ({"speech_position_jitter": float("nan")}, "speech_position_jitter"),
    ],
)
def test_invalid_speech_position_settings_raise_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        TESTER.get_config(**overrides)


def test_speech_position_defaults_and_boundaries():
    config = TESTER.get_config()
    assert config.speech_positions == "sequential"
    assert config.text_tokens_per_frame == 0.25 and config.speech_position_jitter == 0.0
    for jitter in (0.0, 1.0, 1):
        assert TESTER.get_config(speech_position_jitter=jitter).speech_position_jitter == jitter
    assert TESTER.get_config(text_tokens_per_frame=2).text_tokens_per_frame == 2


def test_aligned_settings_survive_save_and_load(tmp_path):
    config = TESTER.get_config(speech_positions="aligned", text_tokens_per_frame=0.31, speech_position_jitter=0.2)
    config.save_pretrained(tmp_path)
    loaded = DiTARConfig.from_pretrained(tmp_path)
    assert loaded.speech_positions == "aligned"
    assert loaded.text_tokens_per_frame == 0.31 and loaded.speech_position_jitter == 0.2
    # and a saved aligned model generates the same after reloading
    model = make_model(text_tokens_per_frame=0.31)
    set_stop_logit(model, -30.0)
    model.save_pretrained(tmp_path / "model")
    reloaded = DiTARForConditionalGeneration.from_pretrained(tmp_path / "model").eval()
    assert reloaded.config.speech_positions == "aligned"
    inputs = TESTER.prepare_generation_inputs()
    a = model.generate(**inputs, max_new_patches=2, temperature=0.0)
    b = reloaded.generate(**inputs, max_new_patches=2, temperature=0.0)
    assert torch.equal(a.features, b.features)


# ----------------------------------------------------------------------------------------------------------------------
# _merge_sequences


def merge_inputs(text_left_padded: bool):
    """Text of 3 and 5 real tokens in 5 columns (padded left or right), 3 and 2 real speech slots; every embedding is a
    distinct constant so that the column each one lands in can be found."""
    text_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    if text_left_padded:
        text_mask = text_mask.flip(1)
    speech_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    text_embeds = (1 + 100 * torch.arange(2)[:, None] + torch.arange(5)[None]).float()[..., None].expand(-1, -1, 4)
    speech_embeds = (1000 + 100 * torch.arange(2)[:, None] + torch.arange(3)[None]).float()[..., None].expand(-1, -1, 4)
    speech_positions = torch.tensor([[0.0, 0.7, 1.4], [0.0, 0.35, 0.7]])
    return text_embeds.clone(), text_mask, speech_embeds.clone(), speech_mask, speech_positions


def column_of(embeds: torch.Tensor, row: int, value: float) -> int:
    columns = (embeds[row, :, 0] == value).nonzero().flatten().tolist()
    assert len(columns) == 1, (row, value, columns)
    return columns[0]


@pytest.mark.parametrize("text_left_padded", [False, True], ids=["right-padded-text", "left-padded-text"])
@pytest.mark.parametrize("left_pad", [False, True], ids=["training-merge", "generation-merge"])
def test_merge_puts_text_at_0_to_L_minus_1_and_speech_at_the_given_positions(text_left_padded, left_pad):
    text_embeds, text_mask, speech_embeds, speech_mask, speech_positions = merge_inputs(text_left_padded)
    merge = DiTARForConditionalGeneration._merge_sequences
    embeds, mask, positions, speech_index = merge(
        text_embeds, text_mask, speech_embeds, speech_mask, left_pad=left_pad, speech_positions=speech_positions
    )
    plain_embeds, plain_mask, plain_positions, plain_index = merge(
        text_embeds, text_mask, speech_embeds, speech_mask, left_pad=left_pad
    )
    # the layout does not depend on the positions
    assert (
        torch.equal(embeds, plain_embeds) and torch.equal(mask, plain_mask) and torch.equal(speech_index, plain_index)
    )
    assert positions.shape == mask.shape and positions.is_floating_point()
    for row in range(2):
        real_text = text_mask[row].nonzero().flatten().tolist()
        for k, source in enumerate(real_text):
            column = column_of(embeds, row, float(text_embeds[row, source, 0]))
            assert positions[row, column] == k, (row, k)
            assert plain_positions[row, column] == k  # sequential: counting the merged sequence
        text_len = len(real_text)
        for slot in range(int(speech_mask[row].sum())):
            column = column_of(embeds, row, float(speech_embeds[row, slot, 0]))
            assert int(speech_index[row, slot]) == column
            assert positions[row, column] == speech_positions[row, slot], (row, slot)
            assert plain_positions[row, column] == text_len + slot
    if left_pad:  # every row's last real position is the last column
        assert mask[:, -1].tolist() == [1, 1]


@pytest.mark.parametrize("left_pad", [False, True], ids=["training-merge", "generation-merge"])
def test_merge_without_speech_positions_keeps_integer_counting(left_pad):
    text_embeds, text_mask, speech_embeds, speech_mask, _ = merge_inputs(text_left_padded=False)
    _, mask, positions, _ = DiTARForConditionalGeneration._merge_sequences(
        text_embeds, text_mask, speech_embeds, speech_mask, left_pad=left_pad
    )
    assert positions.dtype == torch.long
    totals = [3 + 3, 5 + 2]  # real columns per row
    length = max(totals)
    expected = torch.zeros(2, length, dtype=torch.long)
    for row, total in enumerate(totals):
        start = length - total if left_pad else 0
        expected[row, start : start + total] = torch.arange(total)
    assert mask.sum(1).tolist() == totals
    assert torch.equal(positions * mask, expected)  # real columns count 0, 1, ... from each row's first one


# ----------------------------------------------------------------------------------------------------------------------
# training forward


def test_forward_gives_the_backbone_aligned_positions():
    model = make_model()
    inputs = TESTER.prepare_inputs()  # text 7 / 4 tokens (right-padded), 12 / 7 frames -> 6 / 3 whole patches
    recorder = PositionRecorder(model)
    with torch.no_grad():
        model(**inputs, speech_position_rate=RATES)
        model(**inputs)  # default: each row's text length over its real frames
    recorder.remove()
    explicit, default = recorder.calls
    for row, (text_len, frames, patches) in enumerate([(7, 12, 6), (4, 7, 3)]):
        real = text_len + 1 + patches  # right-padded merge: the real columns come first
        torch.testing.assert_close(
            explicit[row, :real],
            expected_forward_positions(text_len, 1 + patches, float(RATES[row])),
            atol=1e-6,
            rtol=0,
        )
        torch.testing.assert_close(
            default[row, :real],
            expected_forward_positions(text_len, 1 + patches, text_len / frames),
            atol=1e-6,
            rtol=0,
        )


def test_forward_loss_depends_on_the_rate_for_aligned_models_only():
    aligned = make_model()
    inputs = TESTER.prepare_inputs()
    with torch.no_grad():
        base = seeded(lambda: aligned(**inputs, speech_position_rate=RATES), 3)
        again = seeded(lambda: aligned(**inputs, speech_position_rate=RATES), 3)
        other = seeded(lambda: aligned(**inputs, speech_position_rate=RATES * 2), 3)
        default = seeded(lambda: aligned(**inputs), 3)
        explicit_default = seeded(lambda: aligned(**inputs, speech_position_rate=torch.tensor([7 / 12, 4 / 7])), 3)
    assert torch.equal(base.loss, again.loss)
    assert (base.loss - other.loss).abs() > 1e-6
    assert (base.speech_hidden_states - other.speech_hidden_states).abs().max() > 1e-4
    torch.testing.assert_close(default.loss, explicit_default.loss, atol=1e-6, rtol=0)

    sequential = make_model(speech_positions="sequential")
    assert same_weights(aligned, sequential)
    with torch.no_grad():
        plain = seeded(lambda: sequential(**inputs), 3)
        with_rate = seeded(lambda: sequential(**inputs, speech_position_rate=RATES), 3)
        with_other_rate = seeded(lambda: sequential(**inputs, speech_position_rate=RATES * 2), 3)
    assert torch.equal(plain.loss, with_rate.loss) and torch.equal(plain.loss, with_other_rate.loss)
    assert torch.equal(plain.speech_hidden_states, with_rate.speech_hidden_states)
    # the same weights with aligned positions are a different model
    assert (plain.speech_hidden_states - base.speech_hidden_states).abs().max() > 1e-4


def test_jitter_changes_nothing_in_eval_mode():
    inputs = TESTER.prepare_inputs()
    still, jittered = make_model(), make_model(speech_position_jitter=0.5)
    with torch.no_grad():
        for rate in (None, RATES):
            a = seeded(lambda: still(**inputs, speech_position_rate=rate), 4)  # noqa: B023
            b = seeded(lambda: jittered(**inputs, speech_position_rate=rate), 4)  # noqa: B023
            assert torch.equal(a.loss, b.loss) and torch.equal(a.speech_hidden_states, b.speech_hidden_states)


def test_jitter_scales_each_rows_rate_in_train_mode():
    inputs = TESTER.prepare_inputs()
    still, jittered = make_model().train(), make_model(speech_position_jitter=0.5).train()
    assert same_weights(still, jittered)
    recorder_still, recorder_jittered = PositionRecorder(still), PositionRecorder(jittered)
    with torch.no_grad():
        loss_still = seeded(lambda: still(**inputs, speech_position_rate=RATES), 5).loss
        loss_jittered = seeded(lambda: jittered(**inputs, speech_position_rate=RATES), 5).loss
        seeded(lambda: jittered(**inputs, speech_position_rate=RATES), 6)
    recorder_still.remove(), recorder_jittered.remove()
    assert (loss_still - loss_jittered).abs() > 1e-6
    exact = recorder_still.calls[0]
    first, second = recorder_jittered.calls
    for row, (text_len, patches) in enumerate([(7, 6), (4, 3)]):
        speech = slice(text_len, text_len + 1 + patches)
        torch.testing.assert_close(
            exact[row, : text_len + 1 + patches],
            expected_forward_positions(text_len, 1 + patches, float(RATES[row])),
            atol=1e-6,
            rtol=0,
        )
        # text positions are not jittered; speech positions stay j * P * r' with one r' per row, r' != r
        assert torch.equal(first[row, :text_len], torch.arange(text_len).float())
        slots = torch.arange(1 + patches).float()
        jittered_rate = float(first[row, text_len + 1]) / P
        torch.testing.assert_close(first[row, speech], slots * P * jittered_rate, atol=1e-5, rtol=1e-5)
        assert abs(jittered_rate / float(RATES[row]) - 1) > 1e-3
        assert abs(float(second[row, text_len + 1]) / P - jittered_rate) > 1e-4  # fresh noise per call


def test_jitter_rate_is_log_normal_with_the_given_scale():
    torch.manual_seed(0)
    rate = torch.full((20000,), 0.25)
    log_ratio = (jitter_rate(rate, 0.3) / rate).log()
    assert abs(float(log_ratio.mean())) < 0.01
    assert abs(float(log_ratio.std()) - 0.3) < 0.01
    assert jitter_rate(rate, 0.0) is rate


# ----------------------------------------------------------------------------------------------------------------------
# generation


@pytest.mark.parametrize("left_pad", [False, True], ids=["right-padded-text", "left-padded-text"])
def test_aligned_kv_cached_generation_matches_recomputation(left_pad):
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_generation_inputs(left_pad=left_pad)  # text 7/4 tokens, prompt 3/1 whole patches
    cached = model.generate(**inputs, max_new_patches=4, temperature=0.0, speech_position_rate=RATES)
    recomputed = model.generate(
        **inputs, max_new_patches=4, temperature=0.0, use_cache=False, speech_position_rate=RATES
    )
    assert cached.features.shape == (2, 4 * P, D) and cached.features.abs().mean() > 0.05
    torch.testing.assert_close(cached.features, recomputed.features, atol=1e-5, rtol=0)
    # the rate matters (so the comparison means something)
    other = model.generate(**inputs, max_new_patches=4, temperature=0.0, speech_position_rate=RATES.flip(0))
    assert (other.features - cached.features).abs().max() > 1e-4


def test_generation_positions_step_by_patch_size_times_rate():
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_generation_inputs(left_pad=True)  # text 7/4, prompt 6/3 frames = 3/1 whole patches
    recorder = PositionRecorder(model)
    model.generate(**inputs, max_new_patches=3, temperature=0.0, speech_position_rate=RATES)
    recorder.remove()
    prefill, *steps = recorder.calls
    assert len(steps) == 3
    for row, (text_len, prompt_patches) in enumerate([(7, 3), (4, 1)]):
        step = P * float(RATES[row])
        real = text_len + 1 + prompt_patches  # left-padded: the row's real columns are the last ones
        torch.testing.assert_close(
            prefill[row, -real:],
            expected_forward_positions(text_len, 1 + prompt_patches, float(RATES[row])),
            atol=1e-6,
            rtol=0,
        )
        for index, positions in enumerate(steps):
            assert positions.shape == (2, 1)
            torch.testing.assert_close(
                positions[row, 0], torch.tensor((prompt_patches + 1 + index) * step), atol=1e-5, rtol=0
            )


def test_generation_without_a_rate_uses_text_tokens_per_frame():
    model = make_model(text_tokens_per_frame=0.4)
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_generation_inputs()
    default = model.generate(**inputs, max_new_patches=3, temperature=0.0)
    explicit = model.generate(**inputs, max_new_patches=3, temperature=0.0, speech_position_rate=0.4)
    other = model.generate(**inputs, max_new_patches=3, temperature=0.0, speech_position_rate=0.25)
    assert torch.equal(default.features, explicit.features)
    assert (default.features - other.features).abs().max() > 1e-4


def test_sequential_generation_ignores_the_rate():
    model = make_model(speech_positions="sequential")
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_generation_inputs()
    plain = model.generate(**inputs, max_new_patches=3, temperature=0.0)
    with_rate = model.generate(**inputs, max_new_patches=3, temperature=0.0, speech_position_rate=RATES)
    assert torch.equal(plain.features, with_rate.features)


@pytest.mark.parametrize("left_pad", [False, True], ids=["right-padded-text", "left-padded-text"])
def test_aligned_batch_of_one_matches_the_padded_batch_row(left_pad):
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_generation_inputs(left_pad=left_pad)
    deterministic = model.generate(**inputs, max_new_patches=3, temperature=0.0, speech_position_rate=RATES)
    sampled = model.generate(
        **inputs, max_new_patches=3, temperature=1.0, generator=generators([5, 6]), speech_position_rate=RATES
    )
    for row in range(2):
        single = select_row(inputs, row)
        alone = model.generate(**single, max_new_patches=3, temperature=0.0, speech_position_rate=RATES[row : row + 1])
        torch.testing.assert_close(alone.features[0], deterministic.features[row], atol=1e-5, rtol=0)
        alone = model.generate(  # a Python float is accepted too
            **single,
            max_new_patches=3,
            temperature=1.0,
            generator=generators([5 + row]),
            speech_position_rate=float(RATES[row]),
        )
        torch.testing.assert_close(alone.features[0], sampled.features[row], atol=1e-5, rtol=0)
        # the other row's rate gives something else
        wrong = model.generate(
            **single, max_new_patches=3, temperature=0.0, speech_position_rate=RATES[1 - row : 2 - row]
        )
        assert (wrong.features[0] - deterministic.features[row]).abs().max() > 1e-4


@pytest.mark.parametrize("prompt_patches", [0, 2])
def test_aligned_generation_matches_a_reference_built_from_the_training_forward(prompt_patches):
    """Left-padded, KV-cached aligned generation with per-row rates must reproduce the teacher-forced training forward
    given the same rates: its LM output at the current position, the last K patches as history, the ODE solve."""
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_inputs()  # right-padded text of 7 and 4 tokens
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    prompt = torch.randn(2, prompt_patches * P, D, generator=torch.Generator().manual_seed(4))
    kwargs = {"prompt_features": prompt} if prompt_patches else {}
    steps, new_patches, guidance = 3, 3, 2.5
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_patches=new_patches,
        temperature=0.0,
        guidance_scale=guidance,
        num_inference_steps=steps,
        speech_position_rate=RATES,
        **kwargs,
    )

    expected = generation_reference_from_forward(
        model, ids, mask, prompt, new_patches, steps, guidance, speech_position_rate=RATES
    )
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("use_cache", [True, False])
def test_pruning_finished_rows_keeps_each_rows_position_step(use_cache):
    tester = DiTARModelTester(batch_size=3, text_lengths=(7, 4, 5), prompt_frame_lengths=(6, 3, 4))
    model = tester.get_model(speech_positions="aligned")
    model.stop_head = ScriptedStopHead([1, None, 3])  # row 0 leaves after 1 patch, row 2 after 3, row 1 runs on
    reference = copy.deepcopy(model).disable_fast_generation()
    inputs = tester.prepare_generation_inputs()
    rates = torch.tensor([0.2, 0.45, 0.7])

    def run(m):
        m.stop_head.calls = 0
        return m.generate(
            **inputs,
            max_new_patches=5,
            temperature=0.7,
            generator=generators([1, 2, 3]),
            use_cache=use_cache,
            speech_position_rate=rates,
        )

    expected = run(reference)
    widths = []
    handle = model.language_model.register_forward_pre_hook(
        lambda _, a, kw: widths.append(kw["inputs_embeds"].shape[0]), with_kwargs=True
    )
    model.enable_fast_generation(compile=False, prune_finished=True)
    pruned = run(model)
    handle.remove()
    assert widths == [3, 3, 2, 2, 1, 1]  # prefill, after patch 1 (3 rows), 2-3 (rows 1, 2), 4-5 (row 1)
    assert pruned.lengths.tolist() == [P, 5 * P, 3 * P]
    torch.testing.assert_close(pruned.features, expected.features, atol=1e-5, rtol=0)
    assert torch.equal(pruned.lengths, expected.lengths) and torch.equal(pruned.stopped, expected.stopped)


def test_aligned_static_cache_equals_the_dynamic_cache():
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = TESTER.prepare_generation_inputs(left_pad=True)
    dynamic = model.generate(**inputs, max_new_patches=3, temperature=0.0, speech_position_rate=RATES)
    model.enable_fast_generation(compile=False, static_cache=True)
    static = model.generate(**inputs, max_new_patches=3, temperature=0.0, speech_position_rate=RATES)
    torch.testing.assert_close(static.features, dynamic.features, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# rate validation


BAD_RATES = [
    ("fast", TypeError, "speech_position_rate"),
    ([0.3, 0.5], TypeError, "speech_position_rate"),
    (True, TypeError, "speech_position_rate"),
    (-0.25, ValueError, "finite and > 0"),
    (0.0, ValueError, "finite and > 0"),
    (float("nan"), ValueError, "finite and > 0"),
    (float("inf"), ValueError, "finite and > 0"),
    (torch.tensor([0.3, 0.0]), ValueError, "finite and > 0"),
    (torch.tensor([0.3, float("nan")]), ValueError, "finite and > 0"),
    (torch.tensor([0.3, 0.4, 0.5]), ValueError, "3 values for a batch of 2"),
    (torch.tensor([[0.3, 0.4], [0.5, 0.6]]), ValueError, "4 values for a batch of 2"),
]
BAD_IDS = ["str", "list", "bool", "negative", "zero", "nan", "inf", "zero-row", "nan-row", "3-rows", "2x2"]


@pytest.mark.parametrize("rate, error, match", BAD_RATES, ids=BAD_IDS)
def test_forward_rejects_bad_rates(rate, error, match):
    with pytest.raises(error, match=match):
        make_model()(**TESTER.prepare_inputs(), speech_position_rate=rate)


@pytest.mark.parametrize("rate, error, match", BAD_RATES, ids=BAD_IDS)
def test_generate_rejects_bad_rates(rate, error, match):
    with pytest.raises(error, match=match):
        make_model().generate(**TESTER.prepare_generation_inputs(), max_new_patches=1, speech_position_rate=rate)


@pytest.mark.parametrize(
    "rate",
    [
        0.3,
        1,
        torch.tensor(0.3),
        torch.tensor([0.3]),
        torch.tensor([0.3, 0.3]),
        torch.tensor([0.3, 0.3], dtype=torch.float64),
    ],
    ids=["float", "int", "0-dim", "one-value", "per-row", "float64"],
)
def test_a_number_or_a_broadcast_tensor_is_accepted(rate):
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs, generation_inputs = TESTER.prepare_inputs(), TESTER.prepare_generation_inputs()
    value = float(torch.as_tensor(rate).flatten()[0])
    with torch.no_grad():
        loss = seeded(lambda: model(**inputs, speech_position_rate=rate).loss)
        expected = seeded(lambda: model(**inputs, speech_position_rate=torch.full((2,), value)).loss)
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
    out = model.generate(**generation_inputs, max_new_patches=2, temperature=0.0, speech_position_rate=rate)
    reference = model.generate(
        **generation_inputs, max_new_patches=2, temperature=0.0, speech_position_rate=torch.full((2,), value)
    )
    torch.testing.assert_close(out.features, reference.features, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# processor, collator, pipeline


@pytest.fixture(scope="module")
def processor():
    return get_dummy_processor()


def test_processor_returns_the_prompt_speaking_rate(processor):
    prompt_texts, waves = ["ab", "a longer prompt"], [tone(0.02), tone(0.05, freq=300.0)]
    out = processor(["one", "two"], prompt_text=prompt_texts, prompt_audio=waves, sampling_rate=SR)
    rate = out["speech_position_rate"]
    frames = [1 + len(w) // HOP for w in waves]
    assert out["prompt_attention_mask"].sum(1).tolist() == frames
    assert isinstance(rate, torch.Tensor) and rate.shape == (2,) and rate.dtype == torch.float32
    expected = [len(processor.encode_text(t)) / f for t, f in zip(prompt_texts, frames, strict=True)]
    torch.testing.assert_close(rate, torch.tensor(expected), atol=1e-7, rtol=0)
    assert rate[0] != rate[1]
    # one prompt for all rows: one rate repeated; the target text does not count
    shared = processor(["one", "a much longer target text"], prompt_text="ab", prompt_audio=waves[0], sampling_rate=SR)
    torch.testing.assert_close(shared["speech_position_rate"], torch.full((2,), expected[0]), atol=1e-7, rtol=0)
    # no prompt: no rate
    assert "speech_position_rate" not in processor(["one", "two"])


def test_collate_examples_gives_the_prompt_rate_of_pairs_and_the_own_rate_of_singles():
    def utterance(tokens, frames, speaker):
        return Utterance(token_ids=list(range(1, tokens + 1)), features=torch.randn(frames, D), speaker=speaker)

    utterances = [utterance(5, 20, "a"), utterance(3, 16, "a"), utterance(6, 10, "b")]
    batch = collate_examples([(0, 1), (2, -1), (1, 0)], utterances, pad_token_id=0, space_token_ids=[9])
    rate = batch["speech_position_rate"]
    assert rate.dtype == torch.float32 and rate.shape == (3,)
    torch.testing.assert_close(rate, torch.tensor([3 / 16, 6 / 10, 5 / 20]), atol=1e-7, rtol=0)
    assert batch["attention_mask"].sum(1).tolist() == [3 + 1 + 5, 6, 5 + 1 + 3]
    assert batch["speech_attention_mask"].sum(1).tolist() == [36, 10, 36]
    # the batch goes straight into an aligned model
    model = make_model()
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def test_pipeline_passes_the_processor_rate_to_generate_patches(monkeypatch):
    pipe = get_dummy_pipeline(speech_positions="aligned")
    assert pipe.model.config.speech_positions == "aligned"
    seen = []
    original = pipe.model.generate_patches

    def spy(*args, **kwargs):
        seen.append(kwargs.get("speech_position_rate", "missing"))
        return original(*args, **kwargs)

    monkeypatch.setattr(pipe.model, "generate_patches", spy)
    inputs = get_dummy_inputs(text=["hello there", "hi"], prompt_text=["the prompt", "a much longer prompt text"])
    out = pipe(**inputs)
    expected = pipe.processor(
        ["hello there", "hi"], prompt_text=inputs["prompt_text"], prompt_audio=inputs["prompt_audio"], sampling_rate=SR
    )["speech_position_rate"]
    assert len(seen) == 1 and isinstance(seen[0], torch.Tensor)
    torch.testing.assert_close(seen[0], expected, atol=0, rtol=0)
    assert out.audios.shape[0] == 2
    # the default voice: the rate of its transcript over its frames
    pipe(**{k: v for k, v in get_dummy_inputs().items() if k not in ("prompt_audio", "prompt_text", "sampling_rate")})
    audio, rate, transcript = pipe.default_voice
    expected = pipe.processor("x", prompt_text=transcript, prompt_audio=audio, sampling_rate=rate)
    torch.testing.assert_close(seen[1], expected["speech_position_rate"], atol=0, rtol=0)


def test_pipeline_output_depends_on_the_prompt_rate_for_aligned_models_only(monkeypatch):
    """The rate reaches the positions: doubling the rate the processor returns changes what an aligned model says
    and nothing for a sequential one."""
    for positions, should_change in (("aligned", True), ("sequential", False)):
        pipe = get_dummy_pipeline(speech_positions=positions)
        base = pipe(**get_dummy_inputs(output_type="features")).audios
        encode = pipe.encode_inputs

        def doubled(*args, encode=encode):
            inputs = encode(*args)
            return dict(inputs, speech_position_rate=inputs["speech_position_rate"] * 2)

        monkeypatch.setattr(pipe, "encode_inputs", doubled)
        changed = pipe(**get_dummy_inputs(output_type="features")).audios
        monkeypatch.undo()
        assert (not torch.equal(torch.as_tensor(base), torch.as_tensor(changed))) == should_change, positions
