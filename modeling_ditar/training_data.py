"""Training data plumbing: deterministic length-bucketed batches of (text, speech) examples and their collation.

An example is one utterance, or (with `pair_prob`) two utterances of the same speaker joined as
"text_a text_b" / features_a ++ features_b, so that prompt continuation (zero-shot cloning) is what the model learns.
The batch order is a pure function of (seed, epoch), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import bisect
import operator
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def model_config_for_processor(processor, model_kwargs: dict | None = None):
    """The `DiTARConfig` of a new model trained with `processor`: `model_kwargs` (a run config's `model:` section)
    plus what the processor fixes: feature size and normalisation statistics, and the tokenizer's vocabulary size
    (backbone type Qwen2 unless `text_config` names another). Used by train.py and by the conversion script that
    rebuilds a run's config."""
    from .configuration_ditar import DiTARConfig

    fe = processor.feature_extractor
    kwargs = dict(model_kwargs or {})
    kwargs.setdefault("feature_dim", fe.feature_size)
    kwargs["feature_mean"] = list(fe.feature_mean) if fe.feature_mean is not None else None
    kwargs["feature_std"] = list(fe.feature_std) if fe.feature_std is not None else None
    text_config = dict(kwargs.pop("text_config", {}))
    text_config.setdefault("model_type", "qwen2")
    text_config["vocab_size"] = len(processor.tokenizer)
    return DiTARConfig(text_config=text_config, **kwargs)


# The feature extractor settings that decide what a feature vector means (normalisation statistics do not: a model
# keeps its own).
FEATURE_SETTINGS = (
    "sampling_rate",
    "feature_size",
    "hop_length",
    "n_fft",
    "win_length",
    "f_min",
    "f_max",
    "mel_scale",
    "mel_norm",
    "power",
    "log_mel",
    "log_floor",
)


def check_corpus_features(
    corpus_settings: dict,
    feature_extractor,
    corpus: str,
    model: str,
    fix: str = "Rebuild the corpus with the model's feature settings, or train a new model on it.",
) -> None:
    """Refuse to train or evaluate a model on a corpus whose features were computed with other settings (another rate,
    number of mel bins, hop, ...): the shapes may not fit, and where they do the model would read other features as
    its own. `corpus_settings` is the corpus's saved feature extractor config (or a processor's config holding it);
    `fix` ends the message. Settings without the rate and the number of bins are refused: nothing could be compared."""
    if isinstance(corpus_settings.get("feature_extractor"), dict):  # a processor's config nests its extractor's
        corpus_settings = corpus_settings["feature_extractor"]
    missing = [k for k in ("sampling_rate", "feature_size") if k not in corpus_settings]
    if missing:
        raise ValueError(
            f"{corpus}: its feature settings have no {' or '.join(missing)}, so they cannot be checked against "
            f"{model}'s; give the feature extractor config the corpus was built with (its preprocessor_config.json)."
        )
    theirs = {k: corpus_settings.get(k) for k in FEATURE_SETTINGS if k in corpus_settings}
    ours = {k: getattr(feature_extractor, k, None) for k in theirs}
    differ = {k: (theirs[k], ours[k]) for k in theirs if theirs[k] != ours[k]}
    if differ:
        listing = ", ".join(f"{k} {a!r} (model: {b!r})" for k, (a, b) in differ.items())
        raise ValueError(
            f"{corpus}: its features were computed with other settings than {model}'s feature extractor: {listing}. "
            + fix
        )


# Default length-sorting pool (PairedLengthBatcher): about this many batches of the longest examples, at least
# MIN_POOL_SIZE examples (the earlier fixed size, so existing configs keep their data order).
POOL_BATCHES = 64
MIN_POOL_SIZE = 256


@dataclass
class Utterance:
    """One training utterance: the token ids of its text, its normalised feature frames and its speaker's label.

    `token_ids` may be a list, numpy array or tensor of integers and is kept as a list of ints (a pair's text is the
    two lists joined with `+`, which adds numpy arrays element-wise); `features` may be a tensor, numpy array or list
    of frames and is kept as a floating-point tensor (one already right is kept as it is, dtype included)."""

    token_ids: list[int]
    features: torch.Tensor  # [T, D] normalised
    speaker: str

    def __post_init__(self):
        self.token_ids = _token_id_list(self.token_ids, self.speaker)
        self.features = _feature_tensor(self.features, self.speaker)


def _token_id_list(ids, speaker) -> list[int]:
    where = f"Utterance of speaker {speaker!r}"
    if type(ids) is list and all(type(i) is int for i in ids):  # what the processor gives: nothing to do
        return ids
    if isinstance(ids, (np.ndarray, torch.Tensor)):
        integer = (
            ids.dtype.kind in "iu"
            if isinstance(ids, np.ndarray)
            else not (ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool)
        )
        if ids.ndim != 1 or not integer:
            raise ValueError(
                f"{where}: token_ids must be a 1-D sequence of integer ids, got a {ids.ndim}-D array of {ids.dtype}; "
                "give the tokenizer's ids (e.g. processor.encode_text(text))."
            )
        return ids.tolist()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise ValueError(
            f"{where}: token_ids must be a sequence of integer ids, got {type(ids).__name__}; "
            "give the tokenizer's ids (e.g. processor.encode_text(text))."
        )
    converted = []
    for i in ids:
        try:
            converted.append(operator.index(i))  # numpy or 0-d tensor integers too, but not 5.0
        except TypeError:
            raise ValueError(
                f"{where}: token_ids must be integer ids, got {i!r} ({type(i).__name__}); "
                "give the tokenizer's ids (e.g. processor.encode_text(text))."
            ) from None
    return converted


def _feature_tensor(features, speaker) -> torch.Tensor:
    where = f"Utterance of speaker {speaker!r}"
    if not isinstance(features, torch.Tensor):
        if isinstance(features, np.ndarray) and features.dtype.kind == "f":
            # a read-only array (a datasets/Arrow view) is copied: torch would warn on sharing it
            features = torch.from_numpy(features if features.flags.writeable else features.copy())
        else:  # a list of frames (datasets' default format), or integers
            try:
                features = torch.as_tensor(np.asarray(features, dtype=np.float32))
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"{where}: features must be [frames, feature_dim] numbers, every frame the same width ({error})."
                ) from None
    elif not features.is_floating_point():
        features = features.float()
    if features.ndim != 2:
        raise ValueError(
            f"{where}: features must be [frames, feature_dim], got shape {tuple(features.shape)}; "
            "give one feature vector per frame."
        )
    if features.shape[0] == 0:
        raise ValueError(f"{where}: features have 0 frames; leave out rows without audio.")
    return features


class PairedLengthBatcher:
    """Plans the batches of one epoch: each batch is a list of (index, partner index or -1), holding at most
    `max_batch_frames` padded frames (longest example x batch size).

    The shuffled examples are sorted by length in pools of `pool_size` and each pool is cut into batches, so a pool
    must hold many batches' worth: with one or two, most batches are the pool's part-filled remainder (at 48,000 frames
    per batch and pools of 256 examples, batches held 45% real frames on the espeak corpus; pools of 4,096: 92%).
    The default (None) sizes pools to about 64 batches of the longest examples, at least 256.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        speakers: Sequence[str],
        max_batch_frames: int,
        max_example_frames: int,
        pair_prob: float = 0.5,
        seed: int = 0,
        pool_size: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        weights: Sequence[float] | None = None,
    ):
        """`pair_prob`: the share of rows that become pairs, the partner drawn among the speaker's other utterances
        whose pair fits max_example_frames (a row whose speaker has none stays single).
        `weights`: how many times each example appears per epoch on average (e.g. 3.0 for a rare source that
        should weigh three times its share; 0 leaves it out); the fractional part is drawn per epoch. None: once."""
        seed, rank = _integer("seed", seed), _integer("rank", rank)
        num_replicas = _integer("num_replicas", num_replicas)
        if num_replicas < 1:
            raise ValueError(f"num_replicas={num_replicas} must be >= 1 (the number of training processes).")
        if not 0 <= rank < num_replicas:
            raise ValueError(
                f"rank={rank} must be in [0, num_replicas={num_replicas}); give this process's index "
                "(e.g. accelerator.process_index) and the number of processes."
            )
        if len(speakers) != len(lengths):  # the speakers decide who is paired with whom
            raise ValueError(
                f"speakers has {len(speakers)} labels for {len(lengths)} examples; give one each, in the same order."
            )
        if not max_example_frames >= 1:
            raise ValueError(f"max_example_frames={max_example_frames} must be >= 1 (the longest example's frames).")
        if max_batch_frames < max_example_frames:
            raise ValueError(f"max_batch_frames={max_batch_frames} must be >= max_example_frames={max_example_frames}.")
        self.lengths = list(lengths)
        self.speakers = list(speakers)
        self.max_batch_frames = max_batch_frames
        self.max_example_frames = max_example_frames
        self.pair_prob = pair_prob
        self.seed = seed
        if pool_size is None:
            pool_size = max(MIN_POOL_SIZE, POOL_BATCHES * max_batch_frames // max_example_frames)
        if pool_size < 1:
            raise ValueError(f"pool_size={pool_size} must be >= 1 (or None for the default).")
        self.pool_size = pool_size
        self.num_replicas = num_replicas
        self.rank = rank
        if weights is not None:
            weights = [float(w) for w in weights]
            if len(weights) != len(self.lengths):
                raise ValueError(f"weights has {len(weights)} values for {len(self.lengths)} examples; give one each.")
            if any(not (w >= 0 and w < float("inf")) for w in weights):
                raise ValueError("weights must be finite and >= 0 (the mean number of appearances per epoch).")
        self.weights = weights
        usable = [
            length <= max_example_frames and (weights is None or weights[index] > 0)
            for index, length in enumerate(self.lengths)
        ]
        if not any(usable):  # every epoch would be empty and a training loop would wait forever
            shortest = min(self.lengths) if self.lengths else None
            raise ValueError(
                f"no example can be batched: max_example_frames={max_example_frames}, the shortest example has "
                f"{shortest} frames"
                + ("" if weights is None else " (or every example that fits has weight 0)")
                + "; raise max_example_frames or give shorter examples."
            )
        # utterances left out for their length alone (weight 0 ones are left out anyway)
        self.too_long = sum(
            length > max_example_frames and (weights is None or weights[index] > 0)
            for index, length in enumerate(self.lengths)
        )
        # each speaker's utterances, shortest first, so that the partners that fit a row are a prefix of its list
        self.by_speaker: dict[str, list[int]] = {}
        for index, speaker in enumerate(self.speakers):
            self.by_speaker.setdefault(speaker, []).append(index)
        self._speaker_lengths: dict[str, list[int]] = {}
        self._position = [0] * len(self.lengths)  # each utterance's place in its speaker's list
        for speaker, indices in self.by_speaker.items():
            indices.sort(key=lambda i: (self.lengths[i], i))
            self._speaker_lengths[speaker] = [self.lengths[i] for i in indices]
            for position, index in enumerate(indices):
                self._position[index] = position

    def epoch(self, epoch: int) -> list[list[tuple[int, int]]]:
        """This replica's batches for `epoch` (every replica gets the same number of batches)."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        if self.weights is None:
            order = list(range(len(self.lengths)))
        else:  # an example of weight 2.4 appears twice, and a third time with probability 0.4
            order = []
            for index, weight in enumerate(self.weights):
                repeats = int(weight) + (weight > int(weight) and rng.random() < weight - int(weight))
                order.extend([index] * repeats)
        rng.shuffle(order)
        examples = []
        for index in order:
            if self.lengths[index] > self.max_example_frames:
                continue
            partner = self._partner(index, rng) if rng.random() < self.pair_prob else -1
            examples.append((index, partner, self.lengths[index] + (self.lengths[partner] if partner >= 0 else 0)))

        batches = []
        for start in range(0, len(examples), self.pool_size):
            pool = sorted(examples[start : start + self.pool_size], key=lambda e: e[2])
            batch, longest = [], 0
            for example in pool:
                new_longest = max(longest, example[2])
                if batch and new_longest * (len(batch) + 1) > self.max_batch_frames:
                    batches.append(batch)
                    batch, new_longest = [], example[2]
                batch.append(example)
                longest = new_longest
            if batch:
                batches.append(batch)
        rng.shuffle(batches)
        if 0 < len(batches) < self.num_replicas:
            # too few batches to go round: repeat them (as torch's DistributedSampler repeats indices) so that every
            # rank has one, rather than every rank none, an epoch that a loop training to a step count never leaves
            batches = [batches[k % len(batches)] for k in range(self.num_replicas)]
        # otherwise the last len % num_replicas batches are left out, so that the ranks stay in step
        usable = len(batches) - len(batches) % self.num_replicas
        return [[(i, j) for i, j, _ in b] for b in batches[self.rank : usable : self.num_replicas]]

    def _partner(self, index: int, rng: random.Random) -> int:
        """A partner for `index` drawn evenly among its speaker's other utterances whose pair fits
        max_example_frames, or -1 where none fits: drawing the row itself, or a partner too long, and giving up
        would pair fewer rows than pair_prob asks (about a quarter instead of half with two utterances a speaker)."""
        speaker = self.speakers[index]
        fitting = bisect.bisect_right(self._speaker_lengths[speaker], self.max_example_frames - self.lengths[index])
        itself = self._position[index] < fitting  # the row fits its own pair: leave it out of the draw
        if fitting - itself <= 0:
            return -1
        position = rng.randrange(fitting - itself)
        if itself and position >= self._position[index]:
            position += 1
        return self.by_speaker[speaker][position]


def _integer(name: str, value) -> int:
    try:
        return operator.index(value)  # numpy integers too (random.Random refuses them)
    except TypeError:
        raise TypeError(f"{name}={value!r} must be an integer.") from None


def collate_examples(
    pairs: Sequence[tuple[int, int]],
    utterances: Sequence[Utterance],
    pad_token_id: int,
    space_token_ids: Sequence[int] = (),
    single_row_rate: float | None = None,
) -> dict[str, torch.Tensor]:
    """Right-padded model inputs for `DiTARForConditionalGeneration.forward`. A pair (index, partner >= 0) is the
    partner's utterance as the prompt followed by the index's; `speech_position_rate` is then the prompt part's
    speaking rate (what generation knows). A row without a partner takes `single_row_rate` when given (e.g. the
    model's `text_tokens_per_frame`, what generation without a prompt uses), else its own utterance's rate, which
    tells aligned positions the utterance's whole length (generation never knows it)."""
    if not pairs:
        raise ValueError("collate_examples got no examples; give at least one (index, partner) pair.")
    texts, features, rates = [], [], []
    dim = utterances[pairs[0][0]].features.shape[1]
    for row, (index, partner) in enumerate(pairs):
        first = utterances[index]
        for which in (index, partner) if partner >= 0 else (index,):
            width = utterances[which].features.shape[1]
            if width != dim:
                raise ValueError(
                    f"collate_examples: row {row} (utterance {which}) has frames of {width} values, the batch's "
                    f"first {dim}; every utterance's features must come from the same feature extractor."
                )
        if partner >= 0:
            second = utterances[partner]
            texts.append(second.token_ids + list(space_token_ids) + first.token_ids)
            features.append(torch.cat([second.features, first.features]))
        else:
            texts.append(first.token_ids)
            features.append(first.features)
        if partner < 0 and single_row_rate is not None:
            rates.append(float(single_row_rate))
        else:
            rated = utterances[partner] if partner >= 0 else first  # the prompt part, or the utterance itself
            rates.append(len(rated.token_ids) / rated.features.shape[0])
    batch = len(texts)
    text_len = max(len(t) for t in texts)
    frames = max(f.shape[0] for f in features)
    input_ids = torch.full((batch, text_len), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(batch, text_len, dtype=torch.long)
    speech = torch.zeros(batch, frames, dim)
    speech_mask = torch.zeros(batch, frames, dtype=torch.long)
    for row, (ids, feats) in enumerate(zip(texts, features, strict=True)):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        speech[row, : feats.shape[0]] = feats.float()
        speech_mask[row, : feats.shape[0]] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "speech_features": speech,
        "speech_attention_mask": speech_mask,
        "speech_position_rate": torch.tensor(rates, dtype=torch.float32),
    }
