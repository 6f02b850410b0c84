"""PairedLengthBatcher: frame budget, determinism, same-speaker pairs, replicas, and how full its batches are."""

import random

import numpy as np
import pytest
import torch

from modeling_ditar.training_data import MIN_POOL_SIZE, PairedLengthBatcher, Utterance, collate_examples


def corpus(num=3000, speakers=60, seed=0):
    rng = random.Random(seed)
    lengths = [rng.randint(60, 400) for _ in range(num)]  # frames, like 1.2-8 s utterances at 50 Hz
    return lengths, [f"spk{i % speakers}" for i in range(num)]


def example_length(lengths, pair):
    index, partner = pair
    return lengths[index] + (lengths[partner] if partner >= 0 else 0)


def fill(batcher, lengths):
    """Real frames / frame budget, mean over an epoch's batches."""
    batches = batcher.epoch(0)
    real = [sum(example_length(lengths, pair) for pair in batch) for batch in batches]
    return sum(real) / len(real) / batcher.max_batch_frames


@pytest.mark.parametrize("max_batch_frames", [1600, 48000])
def test_batches_respect_the_frame_budget_and_pair_within_a_speaker(max_batch_frames):
    lengths, speakers = corpus()
    batcher = PairedLengthBatcher(lengths, speakers, max_batch_frames, 800, pair_prob=0.5, seed=3)
    batches = batcher.epoch(0)
    pairs = [pair for batch in batches for pair in batch]
    assert any(partner >= 0 for _, partner in pairs)
    for batch in batches:
        longest = max(example_length(lengths, pair) for pair in batch)
        assert longest <= 800 and longest * len(batch) <= max_batch_frames
    for index, partner in pairs:
        assert partner < 0 or (partner != index and speakers[partner] == speakers[index])
    assert len({index for index, _ in pairs}) == len(pairs)  # each utterance leads at most one example per epoch


def test_batch_order_is_a_function_of_seed_and_epoch():
    lengths, speakers = corpus()
    make = lambda seed: PairedLengthBatcher(lengths, speakers, 4000, 800, seed=seed)  # noqa: E731
    assert make(1).epoch(2) == make(1).epoch(2)
    assert make(1).epoch(2) != make(1).epoch(3)
    assert make(1).epoch(2) != make(2).epoch(2)


def test_replicas_split_the_epoch_into_equal_disjoint_shares():
    lengths, speakers = corpus()
    shares = [PairedLengthBatcher(lengths, speakers, 4000, 800, num_replicas=2, rank=r).epoch(0) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1])
    leads = [{index for batch in share for index, _ in batch} for share in shares]
    assert not leads[0] & leads[1]


def test_small_batches_keep_the_pool_every_cpu_run_used():
    lengths, speakers = corpus()
    default = PairedLengthBatcher(lengths, speakers, 1600, 800, seed=5)
    assert default.pool_size == MIN_POOL_SIZE
    assert default.epoch(0) == PairedLengthBatcher(lengths, speakers, 1600, 800, seed=5, pool_size=256).epoch(0)


def test_large_batches_get_a_pool_big_enough_to_fill_them():
    lengths, speakers = corpus(num=6000)
    default = PairedLengthBatcher(lengths, speakers, 48000, 800)
    fixed = PairedLengthBatcher(lengths, speakers, 48000, 800, pool_size=256)
    assert fill(fixed, lengths) < 0.65  # the old fixed pool: many batches are a pool's part-filled remainder
    assert fill(default, lengths) > 0.9


def test_bad_pool_size_is_a_clear_error():
    lengths, speakers = corpus(num=10)
    with pytest.raises(ValueError, match="pool_size"):
        PairedLengthBatcher(lengths, speakers, 1600, 800, pool_size=0)


def test_weights_repeat_examples_per_epoch_and_none_keeps_the_old_order():
    lengths, speakers = corpus(num=1000)
    plain = PairedLengthBatcher(lengths, speakers, 4000, 800, seed=5)
    ones = PairedLengthBatcher(lengths, speakers, 4000, 800, seed=5, weights=[1.0] * 1000)
    assert plain.epoch(0) == ones.epoch(0)  # integer weights draw no extra random numbers
    weights = [3.0 if i < 100 else (0.0 if i < 200 else 0.5) for i in range(1000)]
    batcher = PairedLengthBatcher(lengths, speakers, 4000, 800, seed=5, weights=weights)
    counts = [0] * 1000
    for epoch in range(4):
        for batch in batcher.epoch(epoch):
            for index, _ in batch:
                counts[index] += 1
    assert all(c == 12 for c in counts[:100])  # weight 3: exactly three times an epoch
    assert all(c == 0 for c in counts[100:200])  # weight 0: never
    assert 0.35 < sum(counts[200:]) / (4 * 800) < 0.65  # weight 0.5: about every other epoch


def paired_share(batcher, lengths, speakers, epochs=40):
    """Over `epochs`: the share of the rows whose speaker has another utterance that fits the row's pair which became
    pairs; each pair is checked on the way (another utterance of the same speaker, within max_example_frames)."""
    limit = batcher.max_example_frames
    could = [
        any(j != i and speakers[j] == speakers[i] and lengths[i] + lengths[j] <= limit for j in range(len(lengths)))
        for i in range(len(lengths))
    ]
    rows = paired = 0
    for epoch in range(epochs):
        for index, partner in (pair for batch in batcher.epoch(epoch) for pair in batch):
            if partner >= 0:
                assert partner != index and speakers[partner] == speakers[index]
                assert lengths[index] + lengths[partner] <= limit
            if could[index]:
                rows += 1
                paired += partner >= 0
    return paired / rows


@pytest.mark.parametrize(
    "per_speaker, low, high",
    [(2, 100, 300), (4, 100, 300), (20, 100, 300), (5, 300, 700)],  # the last: many pairs too long for 800 frames
)
def test_pair_prob_is_the_share_of_rows_paired_where_a_partner_fits(per_speaker, low, high):
    """The partner was drawn among all the speaker's utterances, the row's own included, and a draw of itself or of a
    partner too long left the row single: pair_prob 0.5 paired 26% of the rows with 2 utterances a speaker, 37% with
    4, and 5% of 300-700-frame utterances with max_example_frames 800."""
    rng = random.Random(1)
    num = per_speaker * (100 // per_speaker)
    lengths = [rng.randint(low, high) for _ in range(num)]
    speakers = [f"s{i // per_speaker}" for i in range(num)] + ["alone"]  # a speaker of one utterance stays single
    lengths.append(200)
    for pair_prob in (0.5, 0.8):
        batcher = PairedLengthBatcher(lengths, speakers, 4000, 800, pair_prob=pair_prob, seed=0)
        assert paired_share(batcher, lengths, speakers) == pytest.approx(pair_prob, abs=0.03)


def test_too_long_counts_only_utterances_that_would_otherwise_train():
    """Weight-0 utterances are left out whatever their length: they were counted as left out for it too."""
    batcher = PairedLengthBatcher([4, 50, 60, 70], list("aabb"), 100, 10, weights=[1.0, 0.0, 1.0, 2.0])
    assert batcher.too_long == 2
    assert PairedLengthBatcher([4, 50, 60, 70], list("aabb"), 100, 10).too_long == 3


@pytest.mark.parametrize("weights", [[1.0] * 5, [-1.0] * 3000, [float("nan")] * 3000])
def test_bad_weights_are_a_clear_error(weights):
    lengths, speakers = corpus()
    with pytest.raises(ValueError, match="weights"):
        PairedLengthBatcher(lengths, speakers, 4000, 800, weights=weights)


def test_more_replicas_than_batches_give_every_rank_a_batch_and_keep_ranks_in_step():
    """40 clips of 300 frames make 4 batches of 24,000 frames; with pairs, fewer than 4. Every rank got [] every
    epoch, and a training loop that runs until max_steps waited forever."""
    lengths, speakers = [300] * 40, [f"v{i % 6}" for i in range(40)]
    for epoch in range(3):
        whole = PairedLengthBatcher(lengths, speakers, 24000, 800).epoch(epoch)
        assert 0 < len(whole) < 4
        shares = [
            PairedLengthBatcher(lengths, speakers, 24000, 800, num_replicas=4, rank=r).epoch(epoch) for r in range(4)
        ]
        assert [len(share) for share in shares] == [1] * 4  # in step: as many batches on every rank
        assert [share[0] for share in shares] == [whole[r % len(whole)] for r in range(4)]  # repeats, in order


def test_replicas_take_every_num_replicas_th_batch_of_the_epoch_when_there_are_enough():
    """The common case keeps its batches (and so resumed runs their loss curves): rank r of R gets batches r, r + R,
    ... of the single-process epoch, and the last len % R batches are left out."""
    lengths, speakers = corpus(num=1000)
    whole = PairedLengthBatcher(lengths, speakers, 4000, 800, seed=2).epoch(1)
    for replicas in (2, 3, 8):
        usable = len(whole) - len(whole) % replicas
        for rank in range(replicas):
            share = PairedLengthBatcher(lengths, speakers, 4000, 800, seed=2, num_replicas=replicas, rank=rank)
            assert share.epoch(1) == whole[rank:usable:replicas]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(num_replicas=0), ValueError, "num_replicas=0"),
        (dict(num_replicas=2, rank=3), ValueError, "rank=3 .* num_replicas=2"),
        (dict(rank=-1), ValueError, "rank=-1"),
        (dict(num_replicas=2.0), TypeError, "num_replicas"),
        (dict(speakers=["a"] * 6), ValueError, "speakers has 6 .* 4 examples"),
        (dict(speakers=["a"]), ValueError, "speakers has 1 .* 4 examples"),
        (dict(max_example_frames=0), ValueError, "max_example_frames=0"),
        (dict(seed=None), TypeError, "seed=None"),
        (dict(seed=1.5), TypeError, "seed=1.5"),
    ],
)
def test_bad_batcher_arguments_are_refused_when_it_is_made(kwargs, error, message):
    """They failed in epoch() with a bare ZeroDivisionError, IndexError or TypeError, or were accepted: a rank past
    num_replicas repeated another rank's batches, and extra speakers shifted which utterances were paired."""
    args = dict(lengths=[10, 20, 30, 40], speakers=list("aabb"), max_batch_frames=100, max_example_frames=60)
    with pytest.raises(error, match=message):
        PairedLengthBatcher(**(args | kwargs))


def test_integer_like_batcher_arguments_are_accepted():
    batcher = PairedLengthBatcher([10, 20], "ab", 100, 60, seed=np.int64(3), num_replicas=np.int64(1), rank=0)
    assert batcher.epoch(0) == PairedLengthBatcher([10, 20], "ab", 100, 60, seed=3).epoch(0)


def test_utterances_take_numpy_tensor_and_list_ids_and_features():
    """A pre-tokenised numpy column made a pair's text the element-wise sum of its two texts; numpy or list features
    (the datasets formats) failed in collate_examples with AttributeError."""
    first, second, space = [35, 2, 36], [33, 2, 34], [2]
    frames = torch.randn(20, 8)
    for ids in (np.array, torch.tensor, lambda ids: [np.int64(i) for i in ids]):
        utterances = [Utterance(ids(first), frames, "s"), Utterance(ids(second), frames, "s")]
        batch = collate_examples([(0, 1)], utterances, 0, space)
        assert batch["input_ids"].tolist() == [second + space + first]
        assert all(type(u.token_ids) is list and type(u.token_ids[0]) is int for u in utterances)
    for features in (frames.numpy(), frames.tolist(), frames.double().numpy(), read_only(frames)):
        utterance = Utterance(first, features, "s")
        assert isinstance(utterance.features, torch.Tensor) and utterance.features.is_floating_point()
        torch.testing.assert_close(utterance.features.float(), frames)
        assert collate_examples([(0, -1)], [utterance], 0)["speech_features"].shape == (1, 20, 8)
    assert Utterance(first, torch.ones(3, 2, dtype=torch.long), "s").features.dtype == torch.float32
    half = frames.half()
    kept = Utterance(first, half, "s")
    assert kept.token_ids is first and kept.features is half  # already right: no copy


def read_only(frames):
    array = frames.numpy().copy()
    array.flags.writeable = False
    return array


@pytest.mark.parametrize(
    "ids, features, message",
    [
        ([5, 6], torch.zeros(0, 8), "0 frames"),
        ([5, 6], torch.zeros(8), r"\[frames, feature_dim\]"),
        ([5, 6], [[1.0, 2.0], [3.0]], "features"),
        ([5.0, 6.0], torch.zeros(4, 8), "integer"),
        (np.array([5.0, 6.0]), torch.zeros(4, 8), "integer"),
        (torch.tensor([5.0]), torch.zeros(4, 8), "integer"),
        ([torch.tensor(5.0)], torch.zeros(4, 8), "integer"),
        ("ab", torch.zeros(4, 8), "token_ids"),
        (np.array([[5, 6]]), torch.zeros(4, 8), "token_ids"),
    ],
)
def test_utterances_with_no_frames_or_non_integer_ids_are_refused(ids, features, message):
    """A 0-frame row ended in ZeroDivisionError in collate_examples; float ids were indexed as they came."""
    with pytest.raises(ValueError, match=message):
        Utterance(ids, features, "spk7")


def test_collate_refuses_mixed_feature_widths_and_no_examples():
    """They failed with torch's "The expanded size ..." and "max() arg is an empty sequence"."""
    utterances = [Utterance([5], torch.zeros(4, 8), "s"), Utterance([6], torch.zeros(4, 6), "s")]
    with pytest.raises(ValueError, match="row 1 .*6 values.* 8"):
        collate_examples([(0, -1), (1, -1)], utterances, 0)
    with pytest.raises(ValueError, match="row 0 .*utterance 1.* 6 .* 8"):
        collate_examples([(0, 1)], utterances, 0)
    with pytest.raises(ValueError, match="no examples"):
        collate_examples([], utterances, 0)


def test_corpus_feature_settings_are_read_from_a_processor_config_and_refused_without_any():
    """A processor's config (the extractor's settings nested under `feature_extractor`) and a file of other settings
    (feature statistics) passed the check without comparing anything."""
    from modeling_ditar import DiTARFeatureExtractor
    from modeling_ditar.training_data import check_corpus_features

    ours = DiTARFeatureExtractor(feature_size=8, sampling_rate=8000, n_fft=64, hop_length=16)
    theirs = {"feature_size": 80, "sampling_rate": 16000, "n_fft": 1024, "hop_length": 256}
    with pytest.raises(ValueError, match="sampling_rate 16000 \\(model: 8000\\)"):
        check_corpus_features({"feature_extractor": theirs}, ours, "corpus", "model")
    with pytest.raises(ValueError, match="have no sampling_rate or feature_size, so they cannot be checked"):
        check_corpus_features({"feature_mean": [0.0] * 8}, ours, "corpus", "model")
    check_corpus_features({"feature_extractor": ours.to_dict()}, ours, "corpus", "model")


def test_single_rows_can_take_the_rate_generation_without_a_prompt_uses():
    """A row without a prompt partner trained aligned positions with its own utterance's rate, which carries its whole
    length (generation never knows it); with `single_row_rate` it takes the given rate, a pair still its prompt's."""
    utterances = [Utterance([5, 6, 7], torch.zeros(12, 8), "s"), Utterance([5, 6], torch.zeros(4, 8), "s")]
    own = collate_examples([(0, -1), (0, 1)], utterances, 0)["speech_position_rate"]
    assert own.tolist() == pytest.approx([3 / 12, 2 / 4])
    given = collate_examples([(0, -1), (0, 1)], utterances, 0, single_row_rate=0.3)["speech_position_rate"]
    assert given.tolist() == pytest.approx([0.3, 2 / 4])


def test_utterances_too_short_for_the_ctc_loss_are_counted():
    """The auxiliary CTC loss gives 0 (zero_infinity) to an utterance with fewer predictions than its tokens plus a
    blank between repeated tokens, without a word; train.py now says how many there are."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from train import too_short_for_ctc

    # patch 4, 2 predictions a patch: 8 frames give 4 predictions
    fits = Utterance([5, 6, 7, 8], torch.zeros(8, 2), "s")  # 4 tokens, no repeats: 4 needed
    repeats = Utterance([5, 5, 6], torch.zeros(8, 2), "s")  # 3 tokens + 1 repeat: 4 needed
    short = Utterance([5, 6, 6, 7], torch.zeros(11, 2), "s")  # 11 frames: 2 whole patches, 4 predictions; 5 needed
    assert too_short_for_ctc([fits, repeats, short], 4, 2) == 1
    assert too_short_for_ctc([fits, repeats, short], 4, 3) == 0
