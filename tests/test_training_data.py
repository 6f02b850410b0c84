"""PairedLengthBatcher: frame budget, determinism, same-speaker pairs, replicas, and how full its batches are."""

import random

import pytest

from modeling_ditar.training_data import MIN_POOL_SIZE, PairedLengthBatcher


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


@pytest.mark.parametrize("weights", [[1.0] * 5, [-1.0] * 3000, [float("nan")] * 3000])
def test_bad_weights_are_a_clear_error(weights):
    lengths, speakers = corpus()
    with pytest.raises(ValueError, match="weights"):
        PairedLengthBatcher(lengths, speakers, 4000, 800, weights=weights)
