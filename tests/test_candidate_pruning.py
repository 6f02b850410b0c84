"""Candidate pruning: best-of-K candidates judged on a prefix of their text after `candidate_prune_after_patches`
patches, the best one continued alone; one-shot generation, `generate` and streaming keep the same candidate."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_helpers import DiTARModelTester, ScriptedStopHead
from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline, tone
from transformers import GenerationConfig

from modeling_ditar.candidate_pruning import CandidateFollower, losing_candidates, prefix_ctc_loss, select_rows
from modeling_ditar.generation_ditar import check_generation_settings, repeat_for_candidates
from modeling_ditar.modeling_ditar import PatchStep

# ---------------------------------------------------------------------------------------------------------------------
# prefix CTC


def _prefix_log_probs_by_enumeration(log_probs: torch.Tensor, target: list[int], blank: int) -> list[float]:
    """log p(target[:m]) for m = 0..len(target), summing every frame path ([T] classes) that collapses to the prefix."""
    frames, classes = log_probs.shape
    totals = [0.0] * (len(target) + 1)
    for path in itertools.product(range(classes), repeat=frames):
        labels = [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]
        if labels == target[: len(labels)]:
            totals[len(labels)] += math.exp(sum(float(log_probs[t, c]) for t, c in enumerate(path)))
    return [math.log(p) if p > 0 else -math.inf for p in totals]


def test_prefix_ctc_loss_by_hand():
    """Two frames, labels {0, 1}, blank 2, text "0 1": p("") = b1 b2, p("0") = a1 a2 + a1 b2 + b1 a2 (0 0, 0 -, - 0),
    p("0 1") = a1 c2. The frames say "0" then blank, so the best prefix is "0", not the whole text."""
    probs = torch.tensor([[0.7, 0.1, 0.2], [0.1, 0.2, 0.7]])  # [T, C]: columns 0, 1, blank
    (a1, c1, b1), (a2, c2, b2) = probs.tolist()
    expected = {0: b1 * b2, 1: a1 * a2 + a1 * b2 + b1 * a2, 2: a1 * c2}
    assert max(expected, key=expected.get) == 1
    nll, length = prefix_ctc_loss(probs.log()[None], torch.tensor([2]), torch.tensor([[0, 1]]), torch.tensor([2]), 2)
    assert int(length) == 1
    torch.testing.assert_close(nll, torch.tensor([-math.log(expected[1])]))
    # the whole text is what plain CTC scores, and it is less likely here
    whole = F.ctc_loss(probs.log()[:, None], torch.tensor([[0, 1]]), [2], [2], blank=2, reduction="none")
    torch.testing.assert_close(whole, torch.tensor([-math.log(expected[2])]))


def test_prefix_ctc_loss_matches_enumerating_every_path():
    generator = torch.Generator().manual_seed(0)
    blank, classes = 3, 4
    targets = torch.tensor([[0, 1, 1, 2], [2, 0, 0, 0], [1, 1, 0, 2]])  # a repeated label needs a blank between
    target_lengths = torch.tensor([4, 1, 3])
    input_lengths = torch.tensor([5, 3, 4])  # padded frames of shorter rows must not count
    log_probs = torch.randn(3, 5, classes, generator=generator).mul(2).log_softmax(-1)
    nll, lengths = prefix_ctc_loss(log_probs, input_lengths, targets, target_lengths, blank)
    for row in range(3):
        target = targets[row, : target_lengths[row]].tolist()
        prefixes = _prefix_log_probs_by_enumeration(log_probs[row, : input_lengths[row]], target, blank)
        best = max(range(len(prefixes)), key=prefixes.__getitem__)
        assert int(lengths[row]) == best
        torch.testing.assert_close(nll[row], torch.tensor(-prefixes[best]), rtol=1e-5, atol=1e-5)


def test_prefix_ctc_loss_is_at_most_the_ctc_loss_of_the_whole_text():
    generator = torch.Generator().manual_seed(1)
    log_probs = torch.randn(4, 12, 6, generator=generator).log_softmax(-1)
    targets = torch.randint(0, 5, (4, 5), generator=generator)
    target_lengths, input_lengths = torch.tensor([5, 3, 4, 2]), torch.tensor([12, 12, 9, 6])
    nll, _ = prefix_ctc_loss(log_probs, input_lengths, targets, target_lengths, blank=5)
    whole = F.ctc_loss(log_probs.transpose(0, 1), targets, input_lengths, target_lengths, blank=5, reduction="none")
    assert bool((nll <= whole + 1e-5).all()) and bool((nll < whole - 1e-3).any())


def test_prefix_ctc_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="log_probs \\[B, T, C\\] and targets \\[B, L\\]"):
        prefix_ctc_loss(torch.zeros(2, 3, 4), torch.tensor([3, 3]), torch.zeros(3, 2), torch.tensor([2, 2]), 3)


# ---------------------------------------------------------------------------------------------------------------------
# the model's prefix score


@pytest.fixture
def tester():
    return DiTARModelTester()


def test_transcript_prefix_ctc_loss_scores_speech_too_short_for_its_whole_text(tester):
    """Two patches cannot say ten tokens: the whole-text loss is inf, the prefix loss is the best start, per frame."""
    model = tester.get_model(ctc_loss_weight=1.0, ctc_frames_per_patch=1)
    ids = torch.arange(1, 11)[None]
    speech = torch.randn(1, 4, model.config.feature_dim, generator=torch.Generator().manual_seed(0))
    assert torch.isinf(model.transcript_ctc_loss(ids, speech)).all()
    with torch.no_grad():
        score = model.transcript_prefix_ctc_loss(ids, speech)
    assert score.shape == (1,) and bool(torch.isfinite(score).all()) and float(score) > 0


def test_transcript_prefix_ctc_loss_is_at_most_the_whole_text_loss(tester):
    model = tester.get_model(ctc_loss_weight=1.0)
    inputs = tester.prepare_inputs()
    tokens = inputs["attention_mask"].sum(1)
    frames = inputs["speech_attention_mask"].sum(1) // model.config.patch_size * model.config.ctc_frames_per_patch
    with torch.no_grad():
        whole = model.transcript_ctc_loss(**inputs) * tokens
        prefix = model.transcript_prefix_ctc_loss(**inputs) * frames
    assert bool((prefix <= whole + 1e-4).all())


def test_transcript_prefix_ctc_loss_needs_a_ctc_head(tester):
    with pytest.raises(ValueError, match="no CTC head"):
        tester.get_model().transcript_prefix_ctc_loss(**tester.prepare_inputs())


# ---------------------------------------------------------------------------------------------------------------------
# the setting


@pytest.mark.parametrize("value", [-1, 1.5, "8", True])
def test_a_bad_pruning_point_is_refused_with_its_name(tester, value):
    model = tester.get_model(ctc_loss_weight=1.0)
    with pytest.raises(ValueError, match="`candidate_prune_after_patches` must be an integer >= 0 or None"):
        model.generation_settings(candidate_prune_after_patches=value)


def test_a_bad_pruning_point_is_refused_by_the_pipeline_and_in_a_saved_generation_config(tmp_path):
    pipe = get_dummy_pipeline(ctc_loss_weight=1.0)
    with pytest.raises(ValueError, match="candidate_prune_after_patches"):
        pipe(**get_dummy_inputs(num_candidates=2, candidate_prune_after_patches=-3))
    with pytest.raises(ValueError, match="candidate_prune_after_patches"):
        pipe.stream(**get_dummy_inputs(max_new_patches=None), candidate_prune_after_patches=2.5)
    config = GenerationConfig(candidate_prune_after_patches=-1)
    with pytest.raises(ValueError, match="candidate_prune_after_patches"):
        pipe.model.generation_settings(config)


def test_pruning_needs_a_ctc_head_and_a_whole_number_of_texts(tester):
    model = tester.get_model()  # no CTC head
    inputs = tester.prepare_generation_inputs()
    with pytest.raises(ValueError, match="candidate_prune_after_patches needs the model's CTC head"):
        next(model.generate_patches(**inputs, candidates_per_text=2, candidate_prune_after_patches=1))
    with pytest.raises(ValueError, match="candidates_per_text must be an integer >= 1 that divides the batch"):
        next(model.generate_patches(**inputs, candidates_per_text=3))


def test_the_pruning_point_round_trips_through_the_generation_config(tester, tmp_path):
    model = tester.get_model(ctc_loss_weight=1.0, num_candidates=4, candidate_prune_after_patches=8)
    assert model.generation_settings().candidate_prune_after_patches == 8
    model.save_pretrained(tmp_path)
    assert GenerationConfig.from_pretrained(tmp_path).candidate_prune_after_patches == 8
    assert type(model).from_pretrained(tmp_path).generation_settings().candidate_prune_after_patches == 8
    # a call can switch pruning off (0), and configs written before the setting existed do not prune
    assert model.generation_settings(candidate_prune_after_patches=0).candidate_prune_after_patches == 0
    assert tester.get_model().generation_settings().candidate_prune_after_patches is None


# ---------------------------------------------------------------------------------------------------------------------
# pruning in generation


@pytest.fixture
def pipe():
    return get_dummy_pipeline(ctc_loss_weight=1.0)


def _patch_widths(model) -> list[int]:
    """Record the rows of every generated patch that `embed_patches` embeds ([rows, 1, P, D]; the prompt and the
    scoring passes embed several patches per row)."""
    widths, embed = [], model.embed_patches

    def counting(patches):
        if patches.shape[1] == 1:
            widths.append(patches.shape[0])
        return embed(patches)

    model.embed_patches = counting
    return widths


def test_pruning_keeps_exactly_one_candidate_per_text_and_goes_on_with_it_alone(pipe):
    k, n, total = 3, 2, 6
    steps = []
    widths = _patch_widths(pipe.model)
    pipe(
        **get_dummy_inputs(
            text=["hello there", "a second text"],
            max_new_patches=total,
            generator=[torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)],
        ),
        num_candidates=k,
        candidate_prune_after_patches=n,
        callback_on_patch_end=lambda _pipe, _index, step: steps.append(step),
    )
    assert len(steps) == total
    for step in steps[: n - 1]:
        assert not bool(step.dropped.any()) and bool(step.active.all())
    for step in steps[n - 1 :]:
        assert step.dropped.view(2, k).sum(1).tolist() == [k - 1, k - 1]  # one candidate left per text
    for step in steps[n:]:
        assert torch.equal(step.active, ~steps[-1].dropped)
    # the backbone and LocDiT compute 2 texts x 3 candidates until the pruning point, then 2 rows
    assert widths == [2 * k] * n + [2] * (total - n)


def _unpruned_candidates(pipe, seed: int, k: int, total: int) -> torch.Tensor:
    """[K, total, P, D] normalised patches of the K candidates, run to the end."""
    steps = []
    pipe(
        **get_dummy_inputs(max_new_patches=total, generator=torch.Generator().manual_seed(seed)),
        num_candidates=k,
        candidate_prune_after_patches=0,
        output_type="features",
        callback_on_patch_end=lambda _pipe, _index, step: steps.append(step.patch),
    )
    return torch.stack(steps, dim=1)


def test_the_kept_candidate_is_the_best_prefix_and_continues_deterministically(pipe):
    k, n, total, seed = 3, 2, 6, 4
    unpruned = _unpruned_candidates(pipe, seed, k, total)
    inputs = get_dummy_inputs(max_new_patches=total)
    enc = pipe.encode_inputs([inputs["text"]], inputs["prompt_audio"], inputs["prompt_text"], inputs["sampling_rate"])
    enc, _ = repeat_for_candidates(enc, None, k)
    with torch.no_grad():
        prefix_scores = pipe.model.score_candidates(enc, [row[:n].flatten(0, 1) for row in unpruned], prefix=True)
    assert len({round(float(s), 5) for s in prefix_scores}) == k, "the tiny model must give distinct scores"
    expected = int(prefix_scores.argmin())

    def pruned():
        kept = []
        out = pipe(
            **dict(inputs, generator=torch.Generator().manual_seed(seed)),
            num_candidates=k,
            candidate_prune_after_patches=n,
            output_type="features",
            callback_on_patch_end=lambda _pipe, _index, step: kept.append(step),
        )
        return out, kept

    out, steps = pruned()
    assert (~steps[-1].dropped).nonzero().flatten().tolist() == [expected]
    features = torch.as_tensor(out.audios[0][: out.audio_lengths[0]])
    patch = pipe.model.config.patch_size
    reference = pipe.model.denormalize_features(unpruned[expected].flatten(0, 1).float())
    # the first n patches are the unpruned run's; after them the row runs alone (noise still drawn for every row,
    # so it continues the same sample, to the rounding of a smaller batch)
    torch.testing.assert_close(features[: n * patch], reference[: n * patch], rtol=0, atol=0)
    torch.testing.assert_close(features, reference, rtol=1e-4, atol=1e-4)
    again, _ = pruned()
    np.testing.assert_array_equal(again.audios, out.audios)


def test_a_text_whose_candidate_finished_before_the_pruning_point_is_ranked_whole(pipe):
    pipe.model.stop_head = ScriptedStopHead([1, None, None])  # candidate 0 stops after its first patch
    runs = {}
    for n in (0, 3):
        steps = []
        runs[n] = pipe(
            **get_dummy_inputs(max_new_patches=5),
            num_candidates=3,
            candidate_prune_after_patches=n,
            callback_on_patch_end=lambda _pipe, _index, step, steps=steps: steps.append(step),
        )
        pipe.model.stop_head.calls = 0
        if n:
            assert not bool(steps[-1].dropped.any())
    np.testing.assert_array_equal(runs[3].audios, runs[0].audios)


def test_generate_keeps_the_candidate_the_pipeline_keeps(pipe):
    inputs = get_dummy_inputs(max_new_patches=6)
    settings = {"num_candidates": 3, "candidate_prune_after_patches": 2}
    one_shot = pipe(**dict(inputs, generator=torch.Generator().manual_seed(7)), output_type="features", **settings)
    enc = pipe.encode_inputs([inputs["text"]], inputs["prompt_audio"], inputs["prompt_text"], inputs["sampling_rate"])
    out = pipe.model.generate(
        **enc,
        max_new_patches=6,
        num_inference_steps=inputs["num_inference_steps"],
        guidance_scale=inputs["guidance_scale"],
        temperature=inputs["temperature"],
        generator=torch.Generator().manual_seed(7),
        **settings,
    )
    features = pipe.model.denormalize_features(out.features[0, : int(out.lengths[0])].float())
    torch.testing.assert_close(features, torch.as_tensor(one_shot.audios[0][: one_shot.audio_lengths[0]]))


# ---------------------------------------------------------------------------------------------------------------------
# streaming


@pytest.mark.parametrize(
    "num_candidates, prune_after, text",
    [
        (3, 2, "hello there"),
        (3, 0, "hello there"),  # whole ranking: the stream waits for the end of the sentence
        (2, 1, "First sentence here. " * 12 + "And the last one."),  # sentence by sentence
    ],
)
def test_stream_equals_one_shot_with_candidates(pipe, num_candidates, prune_after, text):
    settings = {"num_candidates": num_candidates, "candidate_prune_after_patches": prune_after}
    inputs = get_dummy_inputs(text=text, max_new_patches=5)
    one_shot = pipe(**dict(inputs, generator=torch.Generator().manual_seed(3)), **settings)
    stream = pipe.stream(**dict(inputs, generator=torch.Generator().manual_seed(3)), **settings)
    streamed = np.concatenate(list(stream))
    np.testing.assert_array_equal(streamed, one_shot.audios[0][: one_shot.audio_lengths[0]])
    assert stream.stopped == one_shot.stopped[0]


def test_stream_follows_the_generation_config():
    pipe = get_dummy_pipeline(ctc_loss_weight=1.0, num_candidates=3, candidate_prune_after_patches=2)
    inputs = get_dummy_inputs(max_new_patches=5)
    one_shot = pipe(**inputs)
    streamed = np.concatenate(list(pipe.stream(**get_dummy_inputs(max_new_patches=5))))
    np.testing.assert_array_equal(streamed, one_shot.audios[0][: one_shot.audio_lengths[0]])


def _step(index: int, k: int, dropped: list[bool] | None, stopped: bool = False) -> PatchStep:
    patch = torch.full((k, 2, 3), float(index))
    patch[:, 0, 0] = torch.arange(k, dtype=torch.float)  # which row a patch came from
    dropped_tensor = None if dropped is None else torch.tensor(dropped)
    active = torch.ones(k, dtype=torch.bool) if index == 0 or dropped is None else ~dropped_tensor
    return PatchStep(
        index=index,
        patch=patch,
        active=active,
        finished=torch.zeros(k, dtype=torch.bool) if dropped is None else dropped_tensor.clone(),
        stopped=torch.full((k,), stopped),
        dropped=dropped_tensor,
    )


def test_the_follower_plays_nothing_until_one_candidate_is_left():
    follower = CandidateFollower(3, choose=lambda rows, dropped: pytest.fail("nothing left to rank"))
    assert follower.push(_step(0, 3, [False, False, False])) == []
    released = follower.push(_step(1, 3, [True, False, True]))  # the pruning point: row 1 kept
    assert [int(p[0, 0]) for p in released] == [1, 1] and [float(p[1, 1]) for p in released] == [0.0, 1.0]
    later = follower.push(_step(2, 3, [True, False, True], stopped=True))
    assert len(later) == 1 and float(later[0][1, 1]) == 2.0
    assert follower.finish() == [] and follower.stopped


def test_the_follower_ranks_whole_candidates_at_the_end_without_pruning():
    follower = CandidateFollower(2, choose=lambda rows, dropped: 1)
    assert follower.push(_step(0, 2, None)) == [] and follower.push(_step(1, 2, None)) == []
    kept = follower.finish()
    assert [int(p[0, 0]) for p in kept] == [1, 1] and follower.kept == 1


@pytest.mark.parametrize("prefix", [False, True])
def test_scoring_rows_of_different_lengths_in_one_pass_equals_scoring_each_alone(pipe, prefix):
    # score_candidates pads texts and speech to one batch; padding must not change any row's score
    k, total = 3, 6
    unpruned = _unpruned_candidates(pipe, 5, k, total)
    inputs = get_dummy_inputs(max_new_patches=total)
    enc = pipe.encode_inputs([inputs["text"]], inputs["prompt_audio"], inputs["prompt_text"], inputs["sampling_rate"])
    enc, _ = repeat_for_candidates(enc, None, k)
    rows = [unpruned[row, : total - 2 * row].flatten(0, 1) for row in range(k)]  # 6, 4 and 2 patches
    with torch.no_grad():
        together = pipe.model.score_candidates(enc, rows, prefix=prefix)
        alone = [pipe.model.score_candidates(select_rows(enc, [row]), [rows[row]], prefix=prefix) for row in range(k)]
    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ctc_position", ["patch", "prediction"])
@pytest.mark.parametrize("with_voice", [False, True])
def test_pruning_scores_from_the_generation_states_equal_a_scoring_pass(monkeypatch, ctc_position, with_voice):
    """Generation scores the candidates at the pruning point from the backbone states it already computed (the
    prefill's and each step's) instead of a second backbone pass; the scores equal that pass's within float rounding,
    for prompts of different lengths in one batch and for a voice whose transcript the backbone cache already holds."""
    import modeling_ditar.modeling_ditar as modeling

    pipe = get_dummy_pipeline(ctc_loss_weight=1.0, ctc_position=ctc_position)
    generation_inputs, scored, patches = {}, [], []
    generate_patches = pipe.model.generate_patches

    def recording(input_ids, **kwargs):  # the inputs generation ran on, for the scoring pass below
        keys = ("attention_mask", "prompt_features", "prompt_attention_mask", "speech_position_rate")
        generation_inputs.update(input_ids=input_ids, **{key: kwargs[key] for key in keys if kwargs[key] is not None})
        return generate_patches(input_ids, **kwargs)

    def checking(scores, finished, num_candidates, margin=None):
        scored.append(scores)
        return losing_candidates(scores, finished, num_candidates, margin=margin)

    monkeypatch.setattr(pipe.model, "generate_patches", recording)
    monkeypatch.setattr(modeling, "losing_candidates", checking)
    n = 2
    call = get_dummy_inputs(max_new_patches=5, num_candidates=3, candidate_prune_after_patches=n)
    call["callback_on_patch_end"] = lambda _pipe, _index, step: patches.append(step.patch)
    if with_voice:
        voice = pipe.create_voice(
            call.pop("prompt_audio"), call.pop("prompt_text"), sampling_rate=call["sampling_rate"]
        )
        pipe(**call, voice=voice)
    else:
        pipe(**dict(call, text=["hello there", "a second text"], prompt_audio=[tone(0.04), tone(0.09)]))
    generated = torch.stack(patches[:n], dim=1).flatten(1, 2)  # [B*K, N*P, D]: every row's patches until pruning
    with torch.no_grad():
        reference = pipe.model.score_candidates(generation_inputs, list(generated), prefix=True)
    (scores,) = scored
    assert scores is not None and scores.shape == reference.shape
    torch.testing.assert_close(scores, reference, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# a shared start: candidates that begin alike, so streaming can play their first patches before the ranking


def test_shared_patches_are_the_same_in_every_candidate_and_branch_after_them(pipe):
    k, shared, total, seed = 3, 2, 6, 4
    apart = _unpruned_candidates(pipe, seed, k, total)
    pipe.model.generation_config.candidate_shared_patches = shared
    together = _unpruned_candidates(pipe, seed, k, total)
    for row in range(1, k):
        assert torch.equal(together[row, :shared], together[0, :shared])
        assert not torch.equal(together[row, shared], together[0, shared])
    # the first candidate takes its own draws throughout (the others borrow them), so it is the unshared run's
    torch.testing.assert_close(together[0], apart[0], rtol=0, atol=0)
    assert not torch.equal(together[1], apart[1])


def test_a_shared_start_must_end_before_the_pruning_point(tester):
    model = tester.get_model(ctc_loss_weight=1.0)
    assert model.generation_settings(candidate_shared_patches=3, candidate_prune_after_patches=4)
    assert model.generation_settings(candidate_shared_patches=5, candidate_prune_after_patches=0)  # whole ranking
    with pytest.raises(ValueError, match="`candidate_shared_patches`=4 must be less than `candidate_prune_after"):
        model.generation_settings(candidate_shared_patches=4, candidate_prune_after_patches=4)
    for value in (-1, 1.5, None):
        with pytest.raises(ValueError, match="`candidate_shared_patches` must be an integer >= 0"):
            check_generation_settings({"candidate_shared_patches": value})


@pytest.mark.parametrize("prune_after", [4, 0])
def test_stream_equals_one_shot_with_a_shared_start(prune_after):
    pipe = get_dummy_pipeline(
        ctc_loss_weight=1.0, num_candidates=3, candidate_prune_after_patches=prune_after, candidate_shared_patches=2
    )
    inputs = get_dummy_inputs(max_new_patches=6)
    one_shot = pipe(**dict(inputs, generator=torch.Generator().manual_seed(3)))
    stream = pipe.stream(**dict(inputs, generator=torch.Generator().manual_seed(3)))
    np.testing.assert_array_equal(np.concatenate(list(stream)), one_shot.audios[0][: one_shot.audio_lengths[0]])


def _shared_step(index: int, k: int, same: bool, dropped: list[bool] | None = None) -> PatchStep:
    step = _step(index, k, dropped)
    if same:
        step.patch[:, 0, 0] = 0.0  # every row made the same patch
    return step


def test_the_follower_plays_shared_patches_at_once_and_the_kept_candidate_after_them():
    follower = CandidateFollower(3, choose=lambda rows, dropped: pytest.fail("nothing left to rank"))
    first = follower.push(_shared_step(0, 3, same=True, dropped=[False] * 3))
    second = follower.push(_shared_step(1, 3, same=True, dropped=[False] * 3))
    assert [float(p[1, 1]) for p in first + second] == [0.0, 1.0]
    assert follower.push(_shared_step(2, 3, same=False, dropped=[False] * 3)) == []  # branched: wait
    # a later patch that happens to agree again is not played: the candidates already differ
    assert follower.push(_shared_step(3, 3, same=True, dropped=[False] * 3)) == []
    released = follower.push(_shared_step(4, 3, same=False, dropped=[True, False, True]))
    assert [float(p[1, 1]) for p in released] == [2.0, 3.0, 4.0] and [int(p[0, 0]) for p in released] == [1, 0, 1]


def test_the_follower_hands_out_shared_patches_once_when_it_ranks_whole_candidates():
    follower = CandidateFollower(2, choose=lambda rows, dropped: 1)
    assert len(follower.push(_shared_step(0, 2, same=True))) == 1
    assert follower.push(_shared_step(1, 2, same=False)) == []
    kept = follower.finish()
    assert [float(p[1, 1]) for p in kept] == [1.0] and int(kept[0][0, 0]) == 1


# ---------------------------------------------------------------------------------------------------------------------
# early pruning: decide the texts whose best candidate already leads by a margin


def test_an_early_margin_decides_only_the_texts_with_a_clear_leader():
    scores = torch.tensor([1.5, 1.0, 2.0, 2.01])  # text 0: row 1 leads by 0.5; text 1: rows 2 and 3 within 0.01
    running = torch.zeros(4, dtype=torch.bool)
    assert losing_candidates(scores, running, 2, margin=0.1).tolist() == [True, False, False, False]
    assert losing_candidates(scores, running, 2, margin=0.0).tolist() == [True, False, False, True]
    assert losing_candidates(scores, running, 2).tolist() == [True, False, False, True]  # the usual point: all


def _features(pipe, seed: int, **settings) -> list[torch.Tensor]:
    generators = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)]
    out = pipe(
        **get_dummy_inputs(
            text=["hello there", "a second text"], max_new_patches=6, output_type="features", generator=generators
        ),
        num_candidates=3,
        **{k: v for k, v in settings.items() if k == "candidate_prune_after_patches"},
    )
    return [out.audios[row][: out.audio_lengths[row]] for row in range(2)]


def _with_early(pipe, early, margin):
    pipe.model.generation_config.candidate_early_prune_after_patches = early
    pipe.model.generation_config.candidate_early_prune_margin = margin


def test_early_pruning_with_margin_zero_is_pruning_there_and_with_a_huge_margin_the_usual_point(pipe):
    _with_early(pipe, None, 0.0)
    at_two, at_four = (
        _features(pipe, 5, candidate_prune_after_patches=2),
        _features(pipe, 5, candidate_prune_after_patches=4),
    )
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(at_two, at_four, strict=True))
    _with_early(pipe, 2, 0.0)
    always = _features(pipe, 5, candidate_prune_after_patches=4)
    _with_early(pipe, 2, 1e9)
    never = _features(pipe, 5, candidate_prune_after_patches=4)
    for got, want in zip(always + never, at_two + at_four, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_text_decided_early_leaves_the_batch_there_and_streaming_plays_it_like_one_shot(pipe):
    k = 3
    widths = _patch_widths(pipe.model)
    _with_early(pipe, 2, 0.0)
    steps = []
    pipe(
        **get_dummy_inputs(max_new_patches=6, generator=torch.Generator().manual_seed(3)),
        num_candidates=k,
        candidate_prune_after_patches=4,
        callback_on_patch_end=lambda _pipe, _index, step: steps.append(step),
    )
    assert widths == [k, k, 1, 1, 1, 1]
    assert steps[1].dropped.sum() == k - 1 and not bool(steps[0].dropped.any())
    settings = {"num_candidates": k, "candidate_prune_after_patches": 4}
    for margin in (0.0, 1e-3, 1e9):
        _with_early(pipe, 2, margin)
        inputs = get_dummy_inputs(max_new_patches=6)
        one_shot = pipe(**dict(inputs, generator=torch.Generator().manual_seed(3)), **settings)
        stream = pipe.stream(**dict(inputs, generator=torch.Generator().manual_seed(3)), **settings)
        np.testing.assert_array_equal(np.concatenate(list(stream)), one_shot.audios[0][: one_shot.audio_lengths[0]])


def test_early_pruning_needs_a_later_usual_point_and_a_margin_of_zero_or_more(tester):
    model = tester.get_model(ctc_loss_weight=1.0)
    assert model.generation_settings(candidate_prune_after_patches=4, candidate_early_prune_after_patches=2)
    for prune in (2, 0):
        with pytest.raises(ValueError, match="`candidate_early_prune_after_patches`=2 needs"):
            model.generation_settings(candidate_prune_after_patches=prune, candidate_early_prune_after_patches=2)
    with pytest.raises(ValueError, match="`candidate_early_prune_after_patches`=2 needs"):
        model.generation_settings(
            candidate_prune_after_patches=4, candidate_early_prune_after_patches=2, candidate_shared_patches=2
        )
    for margin in (-0.1, math.inf, "0.1"):
        with pytest.raises(ValueError, match="`candidate_early_prune_margin` must be a finite number >= 0"):
            check_generation_settings({"candidate_early_prune_margin": margin})


def test_repeat_for_candidates_repeats_rows_in_place_and_fills_a_missing_mask():
    """Text i's K candidates are rows i*K ... i*K+K-1 of every batched tensor; a scalar rate stays as it is; ranking
    needs an attention mask, so a missing one becomes all ones; K = 1 hands back what it was given."""
    inputs = {
        "input_ids": torch.tensor([[1, 2], [3, 4]]),
        "attention_mask": None,
        "speech_position_rate": torch.tensor(0.5),
    }
    same, generator = repeat_for_candidates(inputs, "g", 1)
    assert same is inputs and generator == "g"
    repeated, generators = repeat_for_candidates(inputs, [torch.Generator().manual_seed(s) for s in (0, 1)], 3)
    assert repeated["input_ids"].tolist() == [[1, 2]] * 3 + [[3, 4]] * 3
    assert repeated["attention_mask"].tolist() == [[1, 1]] * 6
    assert repeated["speech_position_rate"] is inputs["speech_position_rate"]
    assert len(generators) == 6 and inputs["attention_mask"] is None  # the caller's dict is not changed
