"""Best-of-K sampling: `num_candidates` candidates per text, the one the model's own CTC head reads as the text most
closely (`transcript_ctc_loss`) kept."""

import numpy as np
import pytest
import torch
from model_helpers import DiTARModelTester, select_row
from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline
from transformers import GenerationConfig

from modeling_ditar.generation_ditar import candidate_generators as _candidate_generators


@pytest.fixture
def tester():
    return DiTARModelTester()


# ---------------------------------------------------------------------------------------------------------------------
# the score


def test_transcript_ctc_loss_is_the_training_ctc_loss_of_one_row(tester):
    model = tester.get_model(ctc_loss_weight=1.0)
    row = select_row(tester.prepare_inputs(), 0)
    torch.manual_seed(0)
    expected = model(**row).ctc_loss
    torch.testing.assert_close(model.transcript_ctc_loss(**row), expected.reshape(1))


def test_transcript_ctc_loss_scores_rows_independently_of_their_batch(tester):
    model = tester.get_model(ctc_loss_weight=1.0)
    inputs = tester.prepare_inputs()
    batched = model.transcript_ctc_loss(**inputs)
    assert batched.shape == (2,)
    for row in range(2):
        torch.testing.assert_close(batched[row : row + 1], model.transcript_ctc_loss(**select_row(inputs, row)))


def test_transcript_ctc_loss_depends_on_the_transcript(tester):
    """An untrained head has no preference; the score must at least depend on the text (whether it ranks speech
    usefully is measured by the evaluation: docs/research/sweeps/candidates_newvoices48.md)."""
    model = tester.get_model(ctc_loss_weight=1.0)
    row = select_row(tester.prepare_inputs(), 0)
    wrong = dict(row, input_ids=(row["input_ids"] + 1) % model.config.text_config.vocab_size)
    assert not torch.allclose(model.transcript_ctc_loss(**row), model.transcript_ctc_loss(**wrong))


def test_transcript_ctc_loss_is_inf_when_the_speech_is_too_short_for_the_text(tester):
    """Training zeroes such rows (zero_infinity); as a ranking score they must come last, not first."""
    model = tester.get_model(ctc_loss_weight=1.0, ctc_frames_per_patch=1)
    ids = torch.arange(1, 11)[None]  # 10 tokens
    speech = torch.randn(1, 4, model.config.feature_dim)  # 2 patches = 2 CTC frames
    assert torch.isinf(model.transcript_ctc_loss(ids, speech)).all()
    torch.manual_seed(0)
    assert model(input_ids=ids, speech_features=speech).ctc_loss == 0


def test_transcript_ctc_loss_needs_a_ctc_head(tester):
    model = tester.get_model()
    with pytest.raises(ValueError, match="no CTC head.*num_candidates=1"):
        model.transcript_ctc_loss(**tester.prepare_inputs())


# ---------------------------------------------------------------------------------------------------------------------
# the config


@pytest.mark.parametrize("value", [0, -1])
def test_config_rejects_a_bad_num_candidates(tester, value):
    with pytest.raises(ValueError, match="num_candidates"):
        tester.get_config(num_candidates=value, ctc_loss_weight=1.0)


@pytest.mark.parametrize("value", [2.5, "4", True])
def test_config_rejects_a_non_integer_num_candidates(tester, value):
    with pytest.raises(Exception, match="num_candidates"):  # noqa: B017  (the hub's StrictDataclass error)
        tester.get_config(num_candidates=value, ctc_loss_weight=1.0)


def test_several_candidates_need_a_ctc_head(tester):
    model = tester.get_model(num_candidates=4)  # a setting, so the model builds; generating is what needs the head
    inputs = tester.prepare_generation_inputs()
    with pytest.raises(ValueError, match="num_candidates=4 needs the model's CTC head"):
        model.generate(**inputs)


def test_num_candidates_round_trips_through_the_generation_config(tester, tmp_path):
    model = tester.get_model(num_candidates=4, ctc_loss_weight=0.1)
    assert model.generation_config.num_candidates == 4
    model.save_pretrained(tmp_path)
    assert GenerationConfig.from_pretrained(tmp_path).num_candidates == 4
    assert type(model).from_pretrained(tmp_path).generation_settings().num_candidates == 4
    assert tester.get_model().generation_settings().num_candidates == 1


# ---------------------------------------------------------------------------------------------------------------------
# the pipeline


@pytest.fixture
def pipe():
    return get_dummy_pipeline(ctc_loss_weight=1.0)


def _candidates_by_hand(pipe, inputs: dict, seed: int, k: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The K candidates of one text, generated as K separate texts with the generators best-of-K derives, and their
    scores computed from the processor's inputs."""
    children = _candidate_generators([torch.Generator().manual_seed(seed)], 1, k)
    out = pipe(**dict(inputs, text=[inputs["text"]] * k, generator=children, output_type="features", num_candidates=1))
    features = [torch.as_tensor(out.audios[i][: out.audio_lengths[i]]) for i in range(k)]
    model, patch = pipe.model, pipe.model.config.patch_size
    enc = pipe.encode_inputs([inputs["text"]], inputs["prompt_audio"], inputs["prompt_text"], inputs["sampling_rate"])
    prompt = enc["prompt_features"][0][enc["prompt_attention_mask"][0].bool()]
    prompt = prompt[: (prompt.shape[0] // patch) * patch]
    with torch.no_grad():
        scores = torch.stack(
            [
                model.transcript_ctc_loss(
                    enc["input_ids"],
                    torch.cat([prompt, model.normalize_features(f)])[None],
                    speech_position_rate=enc.get("speech_position_rate"),
                )[0]
                for f in features
            ]
        )
    return features, scores


def test_best_of_k_keeps_the_candidate_with_the_lowest_score(pipe):
    inputs = get_dummy_inputs(max_new_patches=4)
    features, scores = _candidates_by_hand(pipe, inputs, seed=3, k=3)
    assert len({round(float(s), 5) for s in scores}) == 3, "the tiny model must give distinct scores"
    out = pipe(**dict(inputs, generator=[torch.Generator().manual_seed(3)], output_type="features", num_candidates=3))
    best = features[int(scores.argmin())]
    assert out.audio_lengths == [best.shape[0]]
    torch.testing.assert_close(torch.as_tensor(out.audios[0][: out.audio_lengths[0]]), best)


def test_best_of_k_samples_k_rows_per_text_in_one_batch(pipe):
    rows = []
    pipe(
        **get_dummy_inputs(text=["hello there", "a second text"], num_candidates=3),
        callback_on_patch_end=lambda p, i, step: rows.append(step.patch.shape[0]),
    )
    assert rows and set(rows) == {6}


def test_num_candidates_defaults_to_the_model_config():
    pipe = get_dummy_pipeline(ctc_loss_weight=1.0, num_candidates=2)
    rows = []
    out = pipe(**get_dummy_inputs(), callback_on_patch_end=lambda p, i, step: rows.append(step.patch.shape[0]))
    assert set(rows) == {2} and out.audios.shape[0] == 1
    rows.clear()
    pipe(
        **get_dummy_inputs(num_candidates=1), callback_on_patch_end=lambda p, i, step: rows.append(step.patch.shape[0])
    )
    assert set(rows) == {1}


def test_one_candidate_is_plain_sampling(pipe):
    plain = pipe(**get_dummy_inputs()).audios
    np.testing.assert_array_equal(pipe(**get_dummy_inputs(num_candidates=1)).audios, plain)


def test_a_text_s_candidates_do_not_depend_on_the_rest_of_the_batch(pipe):
    alone = pipe(**get_dummy_inputs(generator=[torch.Generator().manual_seed(5)], num_candidates=2))
    batch = pipe(
        **get_dummy_inputs(
            text=["hello there", "something else entirely"],
            num_candidates=2,
            generator=[torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)],
        )
    )
    length = alone.audio_lengths[0]
    assert batch.audio_lengths[0] == length
    np.testing.assert_allclose(batch.audios[0][:length], alone.audios[0][:length], atol=1e-5)


def test_a_single_generator_for_one_text_samples_what_a_list_of_one_samples(pipe):
    """With several candidates, `generator=g` and `generator=[g]` were different draws, so one text alone and the same
    text in a batch (or beside a long text, which sends every row through the sentence-group path) gave other audio."""
    seeded = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    alone = pipe(**get_dummy_inputs(generator=seeded(), num_candidates=2))
    listed = pipe(**get_dummy_inputs(generator=[seeded()], num_candidates=2))
    np.testing.assert_array_equal(alone.audios, listed.audios)
    long_text = "First sentence here. " * 12 + "And the last one."
    beside_a_long_text = pipe(
        **get_dummy_inputs(
            text=["hello there", long_text], num_candidates=2, generator=[seeded(), torch.Generator().manual_seed(6)]
        )
    )
    length = alone.audio_lengths[0]
    assert beside_a_long_text.audio_lengths[0] == length
    np.testing.assert_allclose(beside_a_long_text.audios[0][:length], alone.audios[0][:length], atol=1e-5)


def test_best_of_k_is_reproducible_and_speaks_long_texts_sentence_by_sentence(pipe):
    text = "First sentence here. " * 12 + "And the last one."
    first = pipe(**get_dummy_inputs(text=text, num_candidates=2, max_new_patches=2))
    again = pipe(**get_dummy_inputs(text=text, num_candidates=2, max_new_patches=2))
    np.testing.assert_array_equal(first.audios, again.audios)
    assert first.audios.shape[0] == 1 and first.audio_lengths[0] > 0


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2"])
def test_pipeline_rejects_a_bad_num_candidates(pipe, value):
    with pytest.raises(ValueError, match="`num_candidates` must be an integer >= 1"):
        pipe(**get_dummy_inputs(num_candidates=value))


def test_pipeline_needs_a_ctc_head_for_several_candidates():
    pipe = get_dummy_pipeline()
    with pytest.raises(ValueError, match="num_candidates=2 needs the model's CTC head"):
        pipe(**get_dummy_inputs(num_candidates=2))


def test_a_list_of_generators_must_match_the_texts():
    with pytest.raises(ValueError, match="got 1 generators for 2 texts"):
        _candidate_generators([torch.Generator()], 2, 3)


def test_stream_keeps_the_candidate_one_shot_keeps():
    """Streaming follows the generation config's num_candidates (here 3, ranked whole) like pipe(...); the pruned
    policy is tested in test_candidate_pruning.py."""
    pipe = get_dummy_pipeline(ctc_loss_weight=1.0, num_candidates=3)
    inputs = get_dummy_inputs()
    streamed = np.concatenate(list(pipe.stream(**{k: v for k, v in inputs.items()})))
    one_shot = pipe(**get_dummy_inputs())
    np.testing.assert_array_equal(streamed, one_shot.audios[0][: one_shot.audio_lengths[0]])


def _prefill_rows(pipe, **call) -> int:
    """Rows of the first backbone call (the prefill) of one pipeline call."""
    rows = []
    handle = pipe.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["inputs_embeds"].shape[0]), with_kwargs=True
    )
    try:
        pipe(**call)
    finally:
        handle.remove()
    return rows[0]


def test_the_prefill_runs_once_per_text_and_its_cache_serves_every_candidate(pipe):
    """The K candidates of a text share its prefix: the prefill computes one row per text, and the candidates equal
    candidates generated as separate texts (`test_best_of_k_keeps_the_candidate_with_the_lowest_score`)."""
    texts = get_dummy_inputs(text=["hello there", "a second text"], num_candidates=3)
    assert _prefill_rows(pipe, **texts) == 2
    voice = pipe.create_voice(texts["prompt_audio"], texts["prompt_text"], sampling_rate=texts["sampling_rate"])
    with_voice = {k: v for k, v in texts.items() if k not in ("prompt_audio", "prompt_text", "sampling_rate")}
    assert _prefill_rows(pipe, **with_voice, voice=voice) == 2
    assert _prefill_rows(pipe, **dict(texts, num_candidates=1)) == 2


def test_the_prompt_is_encoded_once_per_text_and_serves_every_candidate(pipe):
    """The aggregation encoder embeds each text's voice prompt once, not once per candidate, with the same result."""
    rows = []
    handle = pipe.model.aggregation_encoder.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape))
    try:
        out = pipe(**get_dummy_inputs(text=["hello there", "a second text"], num_candidates=3))
    finally:
        handle.remove()
    assert tuple(rows[0][:1]) == (2,) and rows[0][1] > 1  # the prompt's patches, one row per text
    model = pipe.model
    call = get_dummy_inputs()
    inputs = pipe.encode_inputs(["hello there"] * 3, call["prompt_audio"], call["prompt_text"], call["sampling_rate"])
    patches, _ = model.patchify(inputs["prompt_features"], inputs["prompt_attention_mask"])
    with torch.no_grad():
        once = model._embed_prompt_patches(patches, 3)
        each = model.embed_patches(patches)
    torch.testing.assert_close(once, each, rtol=0, atol=1e-6)
    assert out.audios.shape[0] == 2


def test_a_voice_with_its_cached_transcript_prefills_the_prompt_once_per_text(pipe):
    """With a reused voice the backbone's cache already holds the transcript; the rest of the prompt is prefilled on
    one row per text and repeated for the K candidates, as without a voice (it used to run on every candidate)."""
    call = get_dummy_inputs(num_candidates=3)
    voice = pipe.create_voice(call["prompt_audio"], call["prompt_text"], sampling_rate=call["sampling_rate"])
    with_voice = {k: v for k, v in call.items() if k not in ("prompt_audio", "prompt_text", "sampling_rate")}
    pipe(**with_voice, voice=voice)  # computes the voice's transcript cache

    def prefill(**kwargs) -> tuple[int, int]:  # rows and columns of a call's first backbone pass
        shapes = []
        handle = pipe.model.language_model.register_forward_pre_hook(
            lambda module, args, kw: shapes.append(tuple(kw["inputs_embeds"].shape[:2])), with_kwargs=True
        )
        try:
            pipe(**kwargs)
        finally:
            handle.remove()
        return shapes[0]

    rows, full = prefill(**call)  # the same prompt as audio and transcript: no cache
    assert rows == 1
    # the transcript's columns come from the cache; the rest is prefilled once per text
    transcript = voice.prompt_input_ids.numel()
    assert prefill(**with_voice, voice=voice) == (1, full - transcript)
    assert prefill(**dict(with_voice, text=[call["text"], call["text"]]), voice=voice) == (2, full - transcript)


def test_a_voice_cache_with_a_row_per_candidate_is_prefilled_once_per_text(pipe):
    """`generate` handed a voice cache with one row per candidate (`prefix_cache(model, batch_size=B*K)`) keeps one row
    per text and prefills the rest of the prefix once per text; the audio equals the one-row cache's."""
    model = pipe.model
    call = get_dummy_inputs(num_candidates=3)
    voice = pipe.create_voice(call["prompt_audio"], call["prompt_text"], sampling_rate=call["sampling_rate"])
    inputs = pipe.processor(text=[call["text"]], voice=voice, return_tensors="pt")
    inputs = {k: v for k, v in inputs.items() if k not in ("input_values", "sampling_rate")}
    voice.prefix_cache(model)  # the transcript's cache is computed here, not inside the calls below

    def run(cache_rows: int):
        rows = []
        handle = model.language_model.register_forward_pre_hook(
            lambda module, args, kw: rows.append(tuple(kw["inputs_embeds"].shape[:2])), with_kwargs=True
        )
        try:
            out = model.generate(
                **inputs,
                num_candidates=3,
                max_new_patches=4,
                past_key_values=voice.prefix_cache(model, batch_size=cache_rows),
                generator=torch.Generator().manual_seed(0),
            )
        finally:
            handle.remove()
        return rows[0], out

    (one_rows, one_cols), one = run(1)
    (rows, cols), per_candidate = run(3)
    assert (rows, cols) == (one_rows, one_cols) and rows == 1  # it used to prefill all 3 rows
    torch.testing.assert_close(per_candidate.features, one.features, rtol=0, atol=0)


def test_rows_with_different_prefixes_are_prefilled_separately(pipe):
    """generate_patches called directly with `candidates_per_text` rows that are not copies of one text prefills every
    row."""
    model = pipe.model
    call = get_dummy_inputs()
    inputs = pipe.encode_inputs(
        ["hello there", "hello therf"], call["prompt_audio"], call["prompt_text"], call["sampling_rate"]
    )
    rows = []
    handle = model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["inputs_embeds"].shape[0]), with_kwargs=True
    )
    try:
        steps = list(
            model.generate_patches(
                inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                prompt_features=inputs["prompt_features"],
                prompt_attention_mask=inputs["prompt_attention_mask"],
                speech_position_rate=inputs.get("speech_position_rate"),
                max_new_patches=2,
                generator=torch.Generator().manual_seed(0),
                candidates_per_text=2,
            )
        )
    finally:
        handle.remove()
    assert rows[0] == 2 and len(steps) == 2
