"""The voice prompt's working range: prompts longer than the model was trained on are cut at a pause (with the matching
start of their transcript), and prompts too short for the model are refused with a clear error.

Why an upper bound: the prompt is the prefix the model continues, and its speaking rate (transcript tokens per frame)
sets the speech positions of "aligned" models. The training recipe keeps utterances of 1 to 8 seconds and a prompt is
one utterance, so a longer prompt is a context the model never saw: a 60 s prompt made the default model speak a
6-word sentence for 9.7 s. Cutting it back to 8 s at a pause, with the transcript cut in proportion to the speech kept,
restores the normal length (a transcript left whole would claim far more words than the kept audio holds, and the
model then reads the prompt as very fast speech).

Why a lower bound: LocDiT predicts every patch from the `num_history_patches` patches before it, and the first
generated patch takes them from the end of the prompt; the backbone reads the prompt as whole patches only. A prompt
shorter than that history (and than two patches) gives the model no voice to continue, so it is an error.

Why a loudness-range bound: speech rises and falls between syllables, words and pauses; steady noise, hum and tones
do not. A clip of hiss with a transcript would otherwise be taken as a voice, and every sentence spoken "in" it comes
out as noise. It is refused with its measured range (`check_prompt_is_speech`).

Why a speaking-rate bound: a transcript far longer than its audio can hold (2,000 characters for 3 s) is not the
transcript of that clip; the model reads it as impossibly fast speech and does not stop. It is refused with both numbers
(`check_prompt_speaking_rate`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

# The longest prompt the training recipe shows the model (its utterances are 1-8 s, a prompt is one utterance).
MAX_PROMPT_SECONDS = 8.0
# A prompt whose transcript has more tokens than this per second of audio (beyond `PROMPT_TOKEN_SLACK`) is refused:
# fluent speech is about 10-20 characters or phonemes per second.
MAX_PROMPT_TOKENS_PER_SECOND = 40.0
PROMPT_TOKEN_SLACK = 30
# ... and one with fewer than this per second (beyond `MIN_PROMPT_TOKEN_SLACK`): a transcript that short covers a
# fraction of what is said (e.g. "Hi." for a sentence), and the model, reading the rest of the clip as that word,
# speaks almost nothing. Slow speech with pauses stays well above it.
MIN_PROMPT_TOKENS_PER_SECOND = 4.0
MIN_PROMPT_TOKEN_SLACK = 3
# The pause search looks back at most this share of the limit (a cut at 4 s of an 8 s limit at worst).
_SEARCH_FRACTION = 0.5
# Prompts quieter than this (active-speech RMS, dBFS) are raised to `PROMPT_LEVEL_TARGET_DB` before their features are
# computed. The training recipe's clips sit at about -22 to -15 dBFS (peak-normalised speech); a prompt recorded much
# quieter is a voice at a loudness the model never heard, and the embedded default then often failed to stop.
QUIET_PROMPT_FLOOR_DB = -24.0
PROMPT_LEVEL_TARGET_DB = -20.0
# A prompt whose 300-4000 Hz band loudness varies by less than this (dB between its 10% quietest and 10% loudest 50 ms
# stretches) is refused as not speech. Measured: the evaluation clips long enough to judge (645 of 674; real
# recordings and noisy rooms included) span 15.3 dB or more, random 1.5 s windows of them 11.1 dB or more, and the
# same speech under white noise at 5 dB SNR 5.0 dB or more; steady white, pink and brown noise, fan-like low-passed
# noise, mains hum with its harmonics and tones stay within 2.9 dB at 8-48 kHz. Speech under noise as loud as itself
# (0 dB SNR) can fall below the limit.
MIN_PROMPT_LOUDNESS_RANGE_DB = 4.0
_SPEECH_BAND_HZ = (300.0, 4000.0)
# Shorter clips are not judged: a short stretch of speech can sit inside one long syllable or pause (among 1,700 random
# windows of the evaluation prompts per draw: 0.5 s ones down to 1.1 dB, 1 s ones down to 6.2 dB, 1.5 s ones 11.1 dB).
_MIN_JUDGED_SECONDS = 1.5
# Energy frames, and the shortest quiet run that counts as a pause between words or sentences.
_FRAME_SECONDS = 0.01
_MIN_PAUSE_SECONDS = 0.08
# Silence kept after the last kept word (training utterances keep 0.1 s of trailing silence).
_KEEP_SILENCE_SECONDS = 0.1
_SENTENCE_END = re.compile(r"[.!?;\u2026][\"')\]]*$")
_CLAUSE_END = re.compile(r"[,:][\"')\]]*$")


@dataclass(frozen=True)
class PromptNames:
    """What messages call a voice prompt's recording and its transcript: the arguments the user passed them as (a
    call's `prompt_audio` and `prompt_text`, the default; `audio` and `text` or `transcript` where a voice is made)."""

    audio: str = "prompt_audio"
    text: str = "prompt_text"


def min_prompt_frames(patch_size: int, num_history_patches: int) -> int:
    """Fewest feature frames a prompt must have: the history LocDiT conditions the first patch on, at least two
    patches."""
    return max(2, int(num_history_patches)) * int(patch_size)


def check_prompt_length(
    frames, patch_size: int, num_history_patches: int, hop_length: int, sampling_rate: int, name: str = "prompt_audio"
):
    """Raise a `ValueError` naming the length, the minimum and the fix when a row's prompt has too few frames (`name`:
    what the message calls the prompt audio)."""
    frames = torch.as_tensor(frames)
    minimum = min_prompt_frames(patch_size, num_history_patches)
    short = (frames < minimum).nonzero().flatten().tolist()
    if not short:
        return
    have = int(frames[short[0]])
    # a clip of S samples has 1 + S // hop (centred) frames
    seconds, need = have * hop_length / sampling_rate, (minimum - 1) * hop_length / sampling_rate
    row = f" (row {short[0]})" if frames.numel() > 1 else ""
    raise ValueError(
        f"{name}{row} is shorter than the model needs: {have} feature frames (under {seconds:.3g} s), and this "
        f"model needs at least {minimum} frames ({need:.3g} s: {minimum // patch_size} patches of {patch_size}) to "
        f"continue a voice. Give a longer prompt: 3-{MAX_PROMPT_SECONDS:g} s of clear speech with its exact transcript "
        "works best."
    )


def check_prompt_speaking_rate(
    rate, frames, hop_length: int, sampling_rate: int, names: PromptNames = PromptNames()
) -> None:
    """Refuse a prompt whose transcript cannot fit its audio: more than `MAX_PROMPT_TOKENS_PER_SECOND` transcript
    tokens per second of prompt audio, beyond a slack of `PROMPT_TOKEN_SLACK` tokens (short prompts round badly), or
    fewer than `MIN_PROMPT_TOKENS_PER_SECOND`, beyond `MIN_PROMPT_TOKEN_SLACK` (a transcript of part of the clip).

    `rate` [B]: the transcript's tokens per feature frame (the processor's `speech_position_rate`); `frames` [B]: the
    prompt's feature frames. Fluent speech runs at about 10-20 characters (or phonemes) per second, so 40 is far beyond
    any speaker: such a transcript belongs to other (or longer) audio, and the model would read it as impossibly fast
    speech and not stop. `names`: what the messages call the audio and the transcript."""
    audio, text = names.audio, names.text
    rate, frames = torch.as_tensor(rate).float().flatten(), torch.as_tensor(frames).float().flatten()
    seconds = frames * hop_length / sampling_rate
    tokens = (rate * frames).round()
    too_slow = tokens + MIN_PROMPT_TOKEN_SLACK < MIN_PROMPT_TOKENS_PER_SECOND * seconds
    too_fast = tokens > MAX_PROMPT_TOKENS_PER_SECOND * seconds + PROMPT_TOKEN_SLACK
    for bad, problem in (
        (
            too_slow,
            f"far below human speech (about 10-20 per second; at least {MIN_PROMPT_TOKENS_PER_SECOND:g} are accepted). "
            f"{text} must be the complete transcript of {audio}: give every word said in the clip, or cut the clip "
            "to the words of the transcript (long silences count too).",
        ),
        (
            too_fast,
            f"far above human speech (about 10-20 per second; at most {MAX_PROMPT_TOKENS_PER_SECOND:g} are accepted). "
            f"{text} must be the exact transcript of {audio}: give the words said in the clip, or the clip in which "
            "they are said.",
        ),
    ):
        rows = bad.nonzero().flatten().tolist()
        if rows:
            index = rows[0]
            row = f" (row {index})" if tokens.numel() > 1 else ""
            count, length = int(tokens[index]), float(seconds[index])
            raise ValueError(
                f"{text}{row} has {count} tokens for {length:.2f} s of {audio}: "
                f"{count / max(length, 1e-9):.1f} tokens per second, {problem}"
            )


def frame_energy_db(waveform: np.ndarray, sampling_rate: int) -> tuple[np.ndarray, int]:
    """RMS level (dB) of consecutive 10 ms frames, smoothed over 3 frames; returns (levels, samples per frame)."""
    size = max(1, round(_FRAME_SECONDS * sampling_rate))
    count = len(waveform) // size
    frames = np.asarray(waveform[: count * size], dtype=np.float64).reshape(count, size)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    if count >= 3:
        level = np.convolve(np.pad(level, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    return level, size


def speech_band_loudness_range_db(waveform, sampling_rate: int) -> float:
    """How much a clip's loudness in the speech band (300-4000 Hz) varies: the difference in dB between the 90th and
    the 10th percentile of the band's energy in 20 ms frames (10 ms apart), averaged over 5 frames. Speech spans 15 dB
    or more, steady noise a few dB. A clip shorter than 1.5 s gives infinity: too short to judge."""
    audio = np.asarray(waveform, dtype=np.float64).reshape(-1)
    if len(audio) < _MIN_JUDGED_SECONDS * sampling_rate:
        return float("inf")
    size = 1 << max(0, int(np.ceil(np.log2(0.02 * sampling_rate))))
    hop = max(1, round(_FRAME_SECONDS * sampling_rate))
    # a Blackman-Harris window (sidelobes at -92 dB): with a Hann window, hum below the band leaks into it and beats
    phase = 2 * np.pi * np.arange(size) / size
    window = 0.35875 - 0.48829 * np.cos(phase) + 0.14128 * np.cos(2 * phase) - 0.01168 * np.cos(3 * phase)
    spectrum = np.abs(np.fft.rfft(np.lib.stride_tricks.sliding_window_view(audio, size)[::hop] * window, axis=1)) ** 2
    freqs = np.fft.rfftfreq(size, 1.0 / sampling_rate)
    band = (freqs >= _SPEECH_BAND_HZ[0]) & (freqs <= _SPEECH_BAND_HZ[1])
    # band energy 60 dB under the clip's mean frame energy counts as nothing (what is left of leakage, rounding)
    energy = np.maximum(spectrum[:, band].sum(axis=1), 1e-6 * spectrum.sum(axis=1).mean() + 1e-20)
    # averaged over 50 ms: syllables last longer, while the frame-to-frame scatter of noise's energy evens out
    energy = np.convolve(energy, np.ones(5) / 5, mode="valid")
    level = 10 * np.log10(energy)
    return float(np.percentile(level, 90) - np.percentile(level, 10))


def check_prompt_is_speech(waveform, sampling_rate: int, min_range_db: float | None, name: str = "prompt_audio"):
    """Refuse a clip whose speech-band loudness varies by less than `min_range_db` (see
    [`speech_band_loudness_range_db`]): steady noise, hum or a tone, not a voice. `None` turns the check off."""
    if min_range_db is None:
        return
    spread = speech_band_loudness_range_db(waveform, sampling_rate)
    if spread < min_range_db:
        raise ValueError(
            f"{name} does not sound like speech: its loudness in the speech band (300-4000 Hz) varies by only "
            f"{spread:.1f} dB, where speech rises and falls by 15 dB or more between syllables and pauses; steady "
            "noise, hum or a tone stay within a few dB. Pass a recording of the voice speaking, with little background "
            "noise (`processor.min_prompt_loudness_range_db = None` turns this check off)."
        )


def speech_level_db(waveform, sampling_rate: int) -> float:
    """Active-speech RMS level of a clip in dBFS: the mean power of its 20 ms frames within 40 dB of the loudest one
    (so pauses and a quiet noise floor do not count)."""
    audio = np.asarray(waveform, dtype=np.float64).reshape(-1)
    size = max(1, round(0.02 * sampling_rate))
    count = len(audio) // size
    if count == 0:
        return float(10 * np.log10(np.mean(audio**2) + 1e-12)) if len(audio) else -120.0
    power = np.mean(audio[: count * size].reshape(count, size) ** 2, axis=1) + 1e-12
    active = power[power > power.max() * 1e-4]
    return float(10 * np.log10(np.mean(active)))


def raise_quiet_prompt(waveform: torch.Tensor, sampling_rate: int, floor_db: float | None, target_db: float):
    """`waveform` scaled up to an active-speech level of `target_db` when its level is below `floor_db` (never so far
    that its peak passes 0.99); other clips, and every clip with `floor_db=None`, are returned as they are."""
    if floor_db is None:
        return waveform
    level = speech_level_db(waveform, sampling_rate)
    if level >= floor_db:
        return waveform
    peak = float(waveform.abs().max())
    gain = min(10 ** ((target_db - level) / 20), 0.99 / peak if peak > 0 else 1.0)
    return waveform * gain if gain > 1.0 else waveform


def find_pause(waveform: np.ndarray, sampling_rate: int, limit: int, earliest: int = 0) -> int:
    """Sample index in (earliest, limit] to cut `waveform` at: inside the latest pause (a run of quiet frames of at
    least 80 ms) that starts before `limit`, 0.1 s after the speech before it ends; without such a pause, the quietest
    frame of the range (the latest of equally quiet ones)."""
    level, size = frame_energy_db(waveform, sampling_rate)
    first, last = max(0, earliest // size), min(len(level), limit // size)
    if last - first < 2:
        return limit
    # quiet: within the lowest fifth of the clip's level range (robust to a noise floor and to loudness)
    low, high = np.percentile(level, 5), np.percentile(level, 95)
    quiet = level <= low + 0.2 * (high - low)
    min_run = max(1, round(_MIN_PAUSE_SECONDS / _FRAME_SECONDS))
    keep = max(1, round(_KEEP_SILENCE_SECONDS / _FRAME_SECONDS))
    end = last
    while end > first:
        if not quiet[end - 1]:
            end -= 1
            continue
        start = end
        while start > 0 and quiet[start - 1]:
            start -= 1
        run_end = end
        while run_end < len(quiet) and quiet[run_end]:  # the pause may go on past the limit
            run_end += 1
        if run_end - start >= min_run and start >= first:
            cut = start + min(keep, (run_end - start) // 2)
            return min(cut * size, limit)
        end = start
    window = level[first:last]
    quietest = first + int(np.flatnonzero(window <= window.min() + 1e-9)[-1])
    return min(quietest * size + size // 2, limit)


def cut_transcript(text: str, fraction: float) -> str:
    """The first words of `text` covering about `fraction` of its characters, cut at a word boundary; a boundary after
    a sentence end (or, less strongly, a comma) close to that point is preferred, since pauses fall there."""
    words = text.split()
    if len(words) < 2:
        return text.strip()
    total = len(" ".join(words))
    target = fraction * total
    best, best_score, position = 1, float("inf"), 0
    for count in range(1, len(words)):
        position += len(words[count - 1]) + (1 if count > 1 else 0)
        weight = 0.4 if _SENTENCE_END.search(words[count - 1]) else 0.7 if _CLAUSE_END.search(words[count - 1]) else 1.0
        score = abs(position - target) * weight
        if score < best_score:
            best, best_score = count, score
    return " ".join(words[:best])


def speech_frames(waveform: np.ndarray, sampling_rate: int) -> tuple[np.ndarray, int]:
    """(which frames hold speech, frame size in samples): those above the lowest fifth of the clip's level range
    (robust to a noise floor and to loudness; pauses and silence fall below)."""
    level, size = frame_energy_db(waveform, sampling_rate)
    if level.size == 0:  # shorter than one frame
        return np.zeros(0, dtype=bool), size
    low, high = np.percentile(level, 5), np.percentile(level, 95)
    return level > low + 0.2 * (high - low), size


def pause_cut(audio: np.ndarray, sampling_rate: int, max_seconds: float, min_samples: int = 0) -> int | None:
    """Where to cut a prompt longer than `max_seconds`: a pause no earlier than half the limit (see `find_pause`), in
    samples; None when the prompt fits."""
    limit = int(max_seconds * sampling_rate)
    if len(audio) <= limit:
        return None
    return find_pause(audio, sampling_rate, limit, max(min_samples, int(limit * (1 - _SEARCH_FRACTION))))


def trim_prompt(
    waveform,
    sampling_rate: int,
    transcript: str,
    max_seconds: float | None = None,
    min_samples: int = 0,
    *,
    names: PromptNames = PromptNames(),
) -> tuple[torch.Tensor, str, str | None]:
    """Cut a prompt longer than `max_seconds` (default `MAX_PROMPT_SECONDS`, read at call time) at a pause and its
    transcript in proportion to the speech kept (`names`: what the message calls the audio and the transcript).

    Returns (waveform, transcript, message): the inputs unchanged and `None` when the prompt fits, else the kept start
    of both and a sentence saying what was cut."""
    max_seconds = MAX_PROMPT_SECONDS if max_seconds is None else max_seconds
    audio = waveform.numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform, dtype=np.float32)
    cut = pause_cut(audio, sampling_rate, max_seconds, min_samples)
    if cut is None:
        return torch.as_tensor(audio), transcript, None
    # the share of the speech (not of the silence) that was kept sets the share of the transcript kept
    voiced, size = speech_frames(audio, sampling_rate)
    fraction = voiced[: cut // size].sum() / max(1, voiced.sum())
    kept_text = cut_transcript(transcript, float(fraction))
    kept_words, all_words = len(kept_text.split()), len(transcript.split())
    ending = kept_text if len(kept_text) <= 60 else "..." + kept_text[-50:].split(" ", 1)[-1]
    message = (
        f"{names.audio} is {len(audio) / sampling_rate:.1f} s long, longer than the {max_seconds:g} s the model was "
        f"trained on: it was cut at a pause to its first {cut / sampling_rate:.2f} s, and {names.text} to the first "
        f"{kept_words} of its {all_words} words, in proportion to the speech kept ({ending!r}). For the best result "
        f"give a prompt of at most {max_seconds:g} s with its exact transcript."
    )
    return torch.as_tensor(audio[:cut].copy()), kept_text, message


def load_and_fit_prompt(
    pipe, audio, text: str, sampling_rate, max_seconds: float | None = None, names: PromptNames = PromptNames()
) -> tuple[torch.Tensor, str, str | None]:
    """One prompt read, checked and brought to the pipeline's prompt rate (`processor.load_prompt_audio`), then cut at
    a pause when longer than `max_seconds` (`trim_prompt`): (waveform, transcript, the cut's warning or None). Errors
    and the warning call the audio and the transcript as `names` says."""
    waveform = pipe.processor.load_prompt_audio(audio, sampling_rate, target_rate=pipe._prompt_rate, name=names.audio)
    fitted, kept, message = trim_prompt(waveform, pipe._prompt_rate, text, max_seconds, names=names)
    return (waveform, text, None) if message is None else (fitted, kept, message)


def fit_prompts(pipe, prompt_audio, prompt_text, sampling_rate, max_seconds: float | None = None):
    """The pipeline's prompts, with every one longer than `max_seconds` (default `MAX_PROMPT_SECONDS`) cut at a pause
    (see `trim_prompt`) and a warning per cut. Returns (prompt_audio, prompt_text, sampling_rate) to use instead; when
    nothing is cut they are the arguments as given (the default voice too, when `prompt_audio` is None)."""
    from diffusers.utils import logging

    logger = logging.get_logger(pipe.__module__)
    if prompt_audio is None:
        if pipe.default_voice is None:
            return prompt_audio, prompt_text, sampling_rate
        audio, rate, transcript = pipe.default_voice
        fitted, text, message = trim_prompt(audio, rate, transcript, max_seconds)
        if message is None:
            return prompt_audio, prompt_text, sampling_rate
        logger.warning("the default voice's " + message)
        # kept cut (a folder saved with a longer voice): later calls use the kept part without a warning each
        pipe.processor.default_voice = (fitted.numpy(), rate, text)
        return fitted.numpy(), text, rate
    many = isinstance(prompt_audio, (list, tuple))
    audios = list(prompt_audio) if many else [prompt_audio]
    texts = list(prompt_text) if isinstance(prompt_text, (list, tuple)) else [prompt_text] * len(audios)
    if len(texts) == 1 and len(audios) > 1:
        texts = texts * len(audios)
    rate = pipe._prompt_rate
    new_audios, new_texts, changed = [], [], False
    for index, (audio, text) in enumerate(zip(audios, texts, strict=False)):
        if not isinstance(text, str):  # no transcript: the processor names the mistake
            return prompt_audio, prompt_text, sampling_rate
        waveform, kept, message = load_and_fit_prompt(pipe, audio, text, sampling_rate, max_seconds)
        if message is not None:
            changed = True
            logger.warning((f"prompt {index}: " if many and len(audios) > 1 else "") + message)
        new_audios.append(waveform.numpy())
        new_texts.append(kept)
    if not changed:
        return prompt_audio, prompt_text, sampling_rate
    if many:
        return new_audios, new_texts, rate
    return new_audios[0], new_texts[0], rate
