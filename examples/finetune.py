#!/usr/bin/env python
"""From a folder of recordings to your voice: validate, hold out, build features, fine-tune (LoRA), evaluate, report.

    python examples/finetune.py my_recordings --out runs/my-voice                  # LoRA on the shipped default
    python examples/finetune.py my_recordings --out runs/my-voice --max-steps 600 --rank 16
    python examples/finetune.py my_recordings --out runs/my-voice --full           # full fine-tuning instead
    python examples/finetune.py my_recordings --out runs/my-voice                  # again: resumes where it stopped

The folder holds wav/flac/ogg/opus/mp3 files with same-name transcripts (clip1.wav + clip1.txt; LibriTTS's
clip1.normalized.txt or .original.txt, MFA's clip1.lab; or the one transcript of that name elsewhere in the folder, as
VCTK's txt/ beside wav48/), each subfolder one speaker (--one-speaker: all one voice), or a metadata.csv: either
`file_name,text[,speaker_id]` with a header (separated by '|', commas, semicolons or tabs; other tools' column names
such as audio_file, path, transcription, sentence, speaker_name, client_id work too, or name them with --text-column
and --speaker-column), or LJSpeech's `id|text|normalized text` (audio in wavs/<id>.wav; a column of repeated one-word
names, as in `id|text|speaker`, is the speaker); or a metadata.jsonl with those keys (Hugging Face's audiofolder).
examples/build_corpus.py --from-folder reads the same metadata layouts.
A `datasets` audio dataset works too, saved with `save_to_disk` or a Hub id, with --dataset (and --split,
--text-column, --audio-column): its rows are written out as such a folder (OUT/source) and checked the same way.

    python examples/finetune.py my_dataset_folder --dataset --out runs/my-voice
    python examples/finetune.py user/my-voice-recordings --dataset --split train --text-column sentence --out runs/me

Steps, each skipped when its output exists (so a re-run resumes; training continues from its newest checkpoint). --out
is a new or empty folder, or that of an earlier run; any other folder (the recordings folder too) is refused, as a run
replaces folders in it.
  1. validation: missing/empty transcripts, unreadable, cut-off, empty, non-finite (NaN) or silent audio, steady noise
     or hum, clips too short/long (leading and trailing silence, which the build trims, not counted), transcripts in
     another script or that do not fit their clip, and duplicates are left out with a message each; other sample rates
     are resampled, stereo is downmixed, float audio over full scale is scaled down (noted); clipped or very quiet
     audio and transcripts that look like another language than English are noted.
     With --asr-model, recordings without a transcript are transcribed instead (each transcript is listed).
     OUT/data_clean/clips holds the cleaned mono clips (with metadata.csv), OUT/validation.md the table of what was
     found.
  2. `--holdout` clips (default 4) are held out for the evaluation, never trained on, all of one speaker: the one with
     the most clips (metadata.csv's speaker_id), the voice of OUT/voice. They are held out by sentence: every clip of a
     held-out sentence is (a sentence recorded twice may make the count differ; it is printed), and other speakers'
     clips of it are left out of training. Features are computed with the base model's feature settings
     (examples/build_corpus.py's code) into OUT/data.
  3. training with examples/train.py (Accelerate), `init_from` the base pipeline: a LoRA adapter by default
     (OUT/adapter: adapter_model.safetensors + adapter_config.json + card), every weight with --full.
  4. OUT/voice: the base pipeline with the fine-tuning built in and one of your clips as its default voice
     (`ditar synthesize "Hello." --model OUT/voice -o hello.wav`).
  5. evaluation on the held-out sentences, base vs fine-tuned, prompted with a held-out clip: SIM (Resemblyzer) and
     WER (Whisper-base), DNSMOS with --dnsmos, when the `eval` extra is installed and two held-out clips of different
     sentences make a case (skipped with a note otherwise);
     OUT/report.md holds the table, the adapter's size and links to the audio samples.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# what soundfile decodes (libsndfile >= 1.1: mp3; Ogg Opus, the .opus of voice notes, since 1.0.29)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
# audio formats it cannot decode: listed as left out, so that no recording disappears without a word
OTHER_AUDIO_SUFFIXES = (".m4a", ".aac", ".wma", ".aiff", ".aif", ".webm", ".mp4")
DEFAULT_BASE = str(ROOT / "modeling_ditar" / "default")
# levels noted by the validation: samples this close to full scale count as clipped when more than CLIPPED_SHARE of
# a clip's samples are there; active speech under QUIET_SPEECH_DB (dBFS) is very quiet (the base model's clips sit at
# about -22 to -15 dBFS); a float recording peaking over full scale is scaled down (build_corpus.fit_full_scale)
FULL_SCALE = 0.999
CLIPPED_SHARE = 0.01
QUIET_SPEECH_DB = -45.0


@dataclass
class Clip:
    """One usable recording: its source, transcript and what had to be done to it."""

    path: Path
    text: str
    sampling_rate: int
    channels: int
    seconds: float
    speaker: str = "speaker"
    notes: list[str] = field(default_factory=list)


@dataclass
class Problem:
    """A finding of the validation: `dropped` clips are left out, the others are kept (fixed or merely noted)."""

    file: str
    issue: str
    message: str
    dropped: bool = True


# ----------------------------------------------------------------------------------------------------------------------
# 1. reading and validating the folder


def list_files(folder: Path, skip: Path | None = None) -> list[Path]:
    """The files under `folder`, sorted, but those under `skip`: a run's --out inside the recordings folder holds the
    run's own clips and prompts, which are no recordings (and would change the inputs a re-run must match)."""
    skip = None if skip is None else skip.resolve()
    return sorted(p for p in folder.rglob("*") if p.is_file() and not (skip and p.resolve().is_relative_to(skip)))


# the transcript of an audio file X lies next to it as one of these (the ending in any case), the preferred first:
# X.txt, LibriTTS's X.normalized.txt (numbers and abbreviations written out as spoken) and X.original.txt, and the
# Montreal Forced Aligner's X.lab
TRANSCRIPT_ENDINGS = (".txt", ".normalized.txt", ".original.txt", ".lab")


def list_recordings(
    folder: Path,
    skip: Path | None = None,
    files: list[Path] | None = None,
    columns=None,
    one_speaker: bool = False,
) -> list[tuple[Path, str | None, str]]:
    """(audio path, transcript or None when missing, speaker) for every recording the folder names (files under
    `skip` are left out): the rows of its metadata.csv or metadata.jsonl (`columns`, a
    `corpus.recordings_metadata.ColumnChoice`, names the text and speaker columns), else each audio file with its
    transcript file (`transcript_keys`) and the speaker of its subfolder (`subfolder_speakers`). `one_speaker`: every
    clip is one speaker's. `files`: the folder's `list_files(folder, skip)` when the caller has it already (listing a
    large folder again costs a walk and a resolve of every file)."""
    from corpus.recordings_metadata import metadata_file

    if metadata_file(folder) is not None:
        items = _read_metadata(folder, columns)
    elif columns is not None and (columns.text or columns.speaker):
        raise SystemExit(
            f"{folder}: --text-column and --speaker-column name columns of a metadata.csv, and the folder has none "
            "(its transcripts are files next to the audio); leave them out"
        )
    else:
        items = _paired_recordings(folder, list_files(folder, skip) if files is None else files, one_speaker)
    return [(path, text, "speaker") for path, text, _ in items] if one_speaker else items


def _paired_recordings(folder: Path, files: list[Path], one_speaker: bool) -> list[tuple[Path, str | None, str]]:
    """Each audio file of a folder without a metadata file, with its transcript and the speaker of its subfolder."""
    from corpus.recordings_metadata import METADATA_FILES, common_voice_hint, common_voice_lists

    lists = common_voice_lists(folder)
    if lists:  # its clips have no transcript files: all would be left out as "missing transcript"
        raise SystemExit(common_voice_hint(folder, lists))
    audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    index = transcript_index(files)
    keys = transcript_keys(index, audio)
    speakers = subfolder_speakers(folder, audio)
    items = [
        (path, None if key is None else _read_text(_transcript_beside(index, key)), speaker)
        for path, key, speaker in zip(audio, keys, speakers, strict=True)
    ]
    nested = [p for p in files if p.name in METADATA_FILES]
    if nested and all(text is None for _, text, _ in items):  # e.g. an LJSpeech folder one level down
        if len(nested) == 1:
            raise SystemExit(
                f"{folder}: no metadata.csv at the top, but found one in a subfolder ({nested[0]}): give that folder, "
                f"{nested[0].parent}"
            )
        shown = ", ".join(str(p) for p in nested[:5]) + (", ..." if len(nested) > 5 else "")
        raise SystemExit(
            f"{folder}: no metadata.csv at the top, but found {len(nested)} in subfolders ({shown}): give one of those "
            f"folders, or list all the recordings in one metadata.csv at the top of {folder} (file names relative to "
            "it, a speaker_id column for each folder's voice)"
        )
    if not items:
        other = sorted({p.suffix.lower() for p in files if p.suffix.lower() in OTHER_AUDIO_SUFFIXES})
        if other:
            raise SystemExit(
                f"{folder}: only {', '.join(other)} audio, which cannot be read; convert it to "
                f"{', '.join(AUDIO_SUFFIXES)} (e.g. `ffmpeg -i clip{other[0]} clip.wav`)"
            )
        raise SystemExit(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) and no metadata.csv")
    if not one_speaker:
        note_subfolder_speakers(folder, speakers)
    return items


def transcript_index(files: list[Path]) -> dict[tuple[Path, str], Path]:
    """The transcript files among `files` by (the audio path without its suffix that they belong to, their ending):
    a.normalized.txt is a's `.normalized.txt` (and a.normalized's `.txt`); an ending in any case (clip1.TXT)."""
    index = {}
    for path in files:
        lower = path.name.lower()
        for ending in TRANSCRIPT_ENDINGS:
            if lower.endswith(ending) and len(lower) > len(ending):
                index[(path.with_name(path.name[: -len(ending)]), ending)] = path
    return index


def _transcript_beside(index: dict[tuple[Path, str], Path], key: Path) -> Path | None:
    """The preferred transcript file of audio `key` (its path without suffix), or None."""
    return next((index[key, ending] for ending in TRANSCRIPT_ENDINGS if (key, ending) in index), None)


def transcript_keys(index: dict[tuple[Path, str], Path], audio: list[Path]) -> list[Path | None]:
    """For each audio file, the key (path without ending) of its transcript in `index`: the one next to it, else the
    one transcript of the same name elsewhere in the folder that lies next to no audio file (VCTK's txt/p225/x.txt for
    wav48/p225/x.wav), else None."""
    beside_audio = {path.with_suffix("") for path in audio}
    elsewhere: dict[str, set[Path]] = {}
    for key, _ in index:
        if key not in beside_audio:
            elsewhere.setdefault(key.name, set()).add(key)
    keys = []
    for path in audio:
        key = path.with_suffix("")
        if _transcript_beside(index, key) is None:
            found = elsewhere.get(key.name, set())
            key = next(iter(found)) if len(found) == 1 else None
        keys.append(key)
    return keys


def unpaired_transcripts(files: list[Path]) -> list[Path]:
    """The transcript files no recording pairs with (`transcript_keys`; audio of formats that cannot be read counts,
    as it is reported itself), sorted."""
    audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES + OTHER_AUDIO_SUFFIXES]
    index = transcript_index(files)
    paired = {p.with_suffix("") for p in audio} | {key for key in transcript_keys(index, audio) if key is not None}
    keys_of: dict[Path, list[Path]] = {}
    for (key, _), path in index.items():
        keys_of.setdefault(path, []).append(key)
    return sorted(path for path, keys in keys_of.items() if not paired.intersection(keys))


def subfolder_speakers(folder: Path, paths: list[Path]) -> list[str]:
    """The speaker of each clip by the folders it lies in: the leading folders common to all clips are left out and
    the next one names the speaker (one folder per voice; LibriTTS's SPEAKER/CHAPTER/; VCTK's wav48/SPEAKER/), or
    "speaker" for clips directly in the folders common to all."""
    parts = [path.relative_to(folder).parent.parts for path in paths]
    common = 0
    while parts and all(len(p) > common for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return [p[common] if len(p) > common else "speaker" for p in parts]


def note_subfolder_speakers(folder: Path, speakers: list[str]) -> None:
    """Say which speakers the subfolders gave (`subfolder_speakers`) and how many clips each has: one person's
    session folders would be taken for several voices without a word."""
    from collections import Counter

    counts = Counter(speakers)
    if set(counts) <= {"speaker"}:
        return
    shown = ", ".join(f"{name} ({n} clip{'' if n == 1 else 's'})" for name, n in sorted(counts.items())[:10])
    more = f", ... ({len(counts)} in all)" if len(counts) > 10 else ""
    print(
        f"{folder}: {len(counts)} speakers, one per subfolder: {shown}{more}; if they are all one voice, pass "
        "--one-speaker",
        flush=True,
    )


def _read_text(path: Path) -> str:
    """A UTF-8 text file (a byte-order mark is allowed), or an error naming the file and the fix."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise SystemExit(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8 (e.g. `iconv -f latin1 "
            f"-t utf-8`)"
        ) from None


def _read_metadata(folder: Path, columns=None) -> list[tuple[Path, str | None, str]]:
    """(audio path, transcript or None, speaker) of each row of the folder's metadata file, in any layout
    build_corpus.py reads (`read_metadata_layout`), with the same notes on how its columns were read. The validation
    judges each clip; a row with more fields than the header stops here, as its fields cannot be told apart."""
    from corpus.recordings_metadata import print_metadata_notes, read_metadata_layout

    table = read_metadata_layout(folder, columns)
    print_metadata_notes(table)
    for row in table.rows:
        extra = table.too_many_fields(row)
        if extra:
            raise SystemExit(f"{table.path}:{row.line}: {extra}; {table.quote_hint}")
    # an empty speaker cell is no error here (build_corpus.py refuses it)
    return [(row.path, row.text, row.speaker or _other_speaker(row)) for row in table.rows]


def _other_speaker(row) -> str:
    """The speaker of a row whose speaker cell is empty: the first non-empty cell of another speaker column (a header
    may have both speaker_id and speaker), else "speaker" (every such clip one speaker)."""
    from corpus.recordings_metadata import SPEAKER_COLUMNS

    return next((row.cells[name].strip() for name in SPEAKER_COLUMNS if (row.cells.get(name) or "").strip()), "speaker")


def validate_recordings(
    folder: str | os.PathLike,
    target_sr: int,
    min_sec: float = 1.0,
    max_sec: float = 15.0,
    text_check=None,
    transcriber=None,
    skip: Path | None = None,
    language_check=None,
    columns=None,
    one_speaker: bool = False,
) -> tuple[list[Clip], list[Problem]]:
    """Check every recording; returns the usable clips and the problems found (one message each). `text_check`, when
    given, raises `ValueError` for a transcript the model cannot speak (e.g. another writing system) and returns the
    transcript as it checked it; `language_check`, when given, returns the name of the language that checked text (the
    transcript itself without a `text_check`) looks like when that is not English (or None), which is noted (see
    [`text_checks`]). `transcriber`, when given (a `PromptTranscriber`), transcribes the recordings that have no
    transcript (noted for each); without it they are left out. Files under `skip` (the run's --out, when it is inside
    the folder) are not looked at. `columns` and `one_speaker`: as [`list_recordings`] reads them."""
    import soundfile as sf
    from build_corpus import prepare_audio, resample
    from corpus.recordings_metadata import MAX_HINTS, closest_name, metadata_file

    # a transcript outside the speaking rates a voice prompt may have (characters here, where the pipeline counts
    # tokens: both run at about 12-18 per second) does not belong to its clip
    from modeling_ditar.prompt_audio import (
        MAX_PROMPT_TOKENS_PER_SECOND,
        MIN_PROMPT_LOUDNESS_RANGE_DB,
        MIN_PROMPT_TOKEN_SLACK,
        MIN_PROMPT_TOKENS_PER_SECOND,
        PROMPT_TOKEN_SLACK,
        speech_band_loudness_range_db,
        speech_level_db,
    )
    from modeling_ditar.prompt_transcription import LOOP_COMPRESSION_RATIO, check_enough_speech, compression_ratio

    folder = Path(folder)
    clips, problems, seen_audio, seen_text = [], [], {}, {}
    files = list_files(folder, skip)
    listed = list_recordings(folder, skip, files, columns, one_speaker)
    listing = (metadata_file(folder) or Path("metadata.csv")).name
    named = {path.resolve() for path, _, _ in listed}
    unpaired = set(unpaired_transcripts(files))
    audio_files = [p.relative_to(folder).as_posix() for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    hints = 0
    for path in (p for p in files if p.resolve() not in named):
        suffix, name = path.suffix.lower(), str(path.relative_to(folder))
        if suffix in OTHER_AUDIO_SUFFIXES:
            problems.append(Problem(name, "unsupported format", f"{suffix} cannot be read; convert it to WAV or FLAC"))
        elif suffix in AUDIO_SUFFIXES:
            problems.append(Problem(name, f"not in {listing}", f"audio that {listing} does not name; add a row"))
        elif path in unpaired:
            problems.append(Problem(name, "transcript without audio", "no recording of the same name next to it"))
    for path, text, speaker in listed:
        name = str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)
        if not path.is_file():
            # the file most like the name: a typo's fix, and what links this row to that file's "not in" finding
            close = closest_name(Path(name).as_posix(), audio_files) if hints < MAX_HINTS else None
            hints += 1
            hint = f"; did you mean {close}?" if close else ""
            problems.append(Problem(name, "missing audio", f"named in {listing} but not found{hint}"))
            continue
        if text is None and transcriber is None:
            problems.append(
                Problem(
                    name,
                    "missing transcript",
                    f"no {path.with_suffix('.txt').name} next to it (or pass --asr-model to transcribe it)",
                )
            )
            continue
        text = None if text is None else " ".join(text.split())
        if text == "" and transcriber is not None:  # a blank field or file: transcribed like a missing one
            text = None
        if text == "":
            problems.append(
                Problem(name, "empty transcript", "the transcript is empty (or pass --asr-model to transcribe it)")
            )
            continue
        try:
            audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as error:  # soundfile raises several types for broken files
            problems.append(Problem(name, "unreadable audio", f"cannot be read as audio ({type(error).__name__})"))
            continue
        declared = _declared_seconds(path)
        if declared is not None and declared - audio.shape[0] / sr > 0.01:  # (a missing pad byte is no cut)
            held = f"{audio.shape[0] / sr:.2f} s" if audio.shape[0] else "no audio"
            problems.append(
                Problem(
                    name,
                    "truncated audio",
                    f"the file is cut off: it holds {held} of the {declared:.2f} s its header declares (an "
                    "interrupted copy, download or recording); copy or export it again",
                )
            )
            continue
        if audio.shape[0] == 0:
            problems.append(Problem(name, "empty audio", "the file holds no audio samples"))
            continue
        broken = int(audio.size - np.count_nonzero(np.isfinite(audio)))
        if broken:
            problems.append(
                Problem(
                    name,
                    "non-finite audio",
                    f"{broken} sample{' is' if broken == 1 else 's are'} not a number (NaN or infinity): a damaged "
                    "float recording; export it again",
                )
            )
            continue
        magnitude = np.abs(audio)
        peak = float(magnitude.max())
        if peak < 1e-4:
            problems.append(Problem(name, "silent audio", "the recording is silent"))
            continue
        mono = audio.mean(axis=1)
        # the length the corpus keeps: write_clean_clips resamples and the build's prepare_audio trims leading and
        # trailing silence, so a sentence with long pauses around it is judged on its speech
        seconds = prepare_audio(resample(mono, sr, target_sr), target_sr, target_sr).size / target_sr
        untrimmed = audio.shape[0] / sr
        trimmed = f" of speech ({untrimmed:.1f} s with the silence at its ends)" if untrimmed - seconds >= 0.1 else ""
        if seconds < min_sec:
            problems.append(Problem(name, "too short", f"{seconds:.2f} s{trimmed}, under --min-sec {min_sec:g} s"))
            continue
        if seconds > max_sec:
            problems.append(
                Problem(
                    name,
                    "too long",
                    f"{seconds:.1f} s{trimmed}, over --max-sec {max_sec:g} s (split it into sentences)",
                )
            )
            continue
        # steady hiss, hum or a tone: a voice prompt like it is refused, so it is no voice to learn either
        spread = speech_band_loudness_range_db(mono, sr)
        if spread < MIN_PROMPT_LOUDNESS_RANGE_DB:
            problems.append(
                Problem(
                    name,
                    "not speech",
                    f"its loudness in the speech band varies by only {spread:.1f} dB (speech: 15 dB or more); "
                    "steady noise, hum or a tone",
                )
            )
            continue
        transcribed = text is None
        if transcribed:
            try:
                check_enough_speech(mono, sr, name="the recording")
            except ValueError as error:
                problems.append(Problem(name, "too little speech to transcribe", str(error)))
                continue
            try:
                text = " ".join(transcriber(mono, sr).split())
            except Exception as error:  # noqa: BLE001 - the recogniser's failure on one clip is reported for it
                problems.append(Problem(name, "transcription failed", f"{type(error).__name__}: {error}"))
                continue
            if not text:
                problems.append(Problem(name, "nothing heard", f"{transcriber.name} heard no words in it"))
                continue
            if compression_ratio(text) > LOOP_COMPRESSION_RATIO:
                problems.append(
                    Problem(name, "transcript repeats itself", f"{transcriber.name} looped: {text[:60]!r}...")
                )
                continue
        checked = text  # the transcript as the text check returns it, which the language check reads
        if text_check is not None:
            try:
                checked = text_check(text)
            except ValueError as error:
                problems.append(Problem(name, "text the model cannot speak", str(error)))
                continue
        too_slow = len(text) + MIN_PROMPT_TOKEN_SLACK < MIN_PROMPT_TOKENS_PER_SECOND * seconds
        if too_slow or len(text) > MAX_PROMPT_TOKENS_PER_SECOND * seconds + PROMPT_TOKEN_SLACK:
            rate = len(text) / seconds
            problems.append(
                Problem(
                    name,
                    "transcript does not fit",
                    f"{len(text)} characters for {seconds:.1f} s{trimmed} ({rate:.0f} per second; speech runs at "
                    "about 12-18): give the complete, exact transcript of this clip",
                )
            )
            continue
        digest = hashlib.sha1(np.ascontiguousarray(audio).tobytes()).hexdigest()
        if digest in seen_audio:
            problems.append(Problem(name, "duplicate audio", f"the same audio as {seen_audio[digest]}"))
            continue
        seen_audio[digest] = name
        clip = Clip(path, text, sr, audio.shape[1], seconds, speaker)
        if transcribed:
            clip.notes.append("transcribed")
            problems.append(Problem(name, "transcribed", f"no transcript: {transcriber.name} heard {text!r}", False))
        key = text.lower()
        if key in seen_text:
            problems.append(Problem(name, "duplicate transcript", f"the same text as {seen_text[key]}", False))
        seen_text.setdefault(key, name)
        language = None if language_check is None else language_check(checked)
        if language is not None:
            clip.notes.append(f"looks {language}")
            message = f"looks {language}: the model speaks English only and will read it with English pronunciation"
            problems.append(Problem(name, "other language", message, False))
        if peak > 1.0:  # a float recording: the build would clip it at full scale, write_clean_clips scales it down
            clip.notes.append("scaled down")
            times = f"{peak:.1f}" if peak >= 1.1 else f"{peak:.2f}"
            problems.append(Problem(name, "over full scale", f"peaks at {times}x full scale: scaled down", False))
        else:
            share = float(np.mean(magnitude >= FULL_SCALE))
            if share > CLIPPED_SHARE:
                clip.notes.append("clipped")
                message = f"clipped: {100 * share:.0f}% of samples at full scale; the voice learns the distortion"
                problems.append(Problem(name, "clipped", message, False))
        level = speech_level_db(mono, sr)
        if level < QUIET_SPEECH_DB:
            clip.notes.append("quiet")
            message = (
                f"very quiet: its speech is at {level:.0f} dBFS, where the base model learnt from about -22 to -15 "
                "dBFS; record closer to the microphone or with more gain"
            )
            problems.append(Problem(name, "quiet", message, False))
        if audio.shape[1] > 1:
            clip.notes.append("downmixed")
            problems.append(Problem(name, "stereo", f"{audio.shape[1]} channels, downmixed to mono", False))
        if sr != target_sr:
            clip.notes.append("resampled")
            message = f"{sr} Hz, resampled to {target_sr} Hz"
            if sr < target_sr:  # upsampling cannot bring back what the recording never had
                message += f": it lacks the voice above {sr // 2} Hz; record at {target_sr} Hz or more if you can"
            problems.append(Problem(name, "sample rate", message, False))
        clips.append(clip)
    return clips, problems


def _declared_seconds(path: Path) -> float | None:
    """The length in seconds a WAV file's header declares when the file holds less (libsndfile's `data : N (should be
    M)`: a cut-off file), else None: it holds what it declares, is no WAV, or declares the placeholder size of a
    recording that was never finished (0xFFFFFFFF)."""
    import re

    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - the read before this one reports an unreadable file
        return None
    size = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info, re.MULTILINE)
    block = re.search(r"Block Align\s*:\s*(\d+)", info.extra_info)
    if size is None or block is None or int(block.group(1)) == 0 or info.samplerate <= 0:
        return None
    declared, held = int(size.group(1)), int(size.group(2))
    if declared <= held or declared >= 0xFFFFFFFF:
        return None
    if held and info.frames:  # in proportion to what it holds (compressed WAVs have blocks of many frames)
        return info.frames / info.samplerate * declared / held
    return declared / int(block.group(1)) / info.samplerate


def text_checks(processor):
    """(text_check, language_check) for [`validate_recordings`] from a processor's text front end: the first raises
    `ValueError` for letters of another writing system and returns the transcript as it checked it (cleaned), the
    second (`guess_latin_language`, given that checked text, so the script is checked once per clip) returns the name
    of the language a Latin-script transcript looks like when that is not English, else None. Both are None
    without a front end; the language check is None when the front end does not check languages (not English, or
    `check_language` off)."""
    from modeling_ditar.tokenization_ditar import guess_latin_language

    frontend = getattr(processor, "frontend", None)
    text_check = getattr(frontend, "check_text_script", None)
    if text_check is None or not (frontend.check_language and frontend.is_english):
        return text_check, None
    return text_check, guess_latin_language


def validation_table(clips: list[Clip], problems: list[Problem]) -> str:
    left_out = sum(p.dropped for p in problems)
    # kept clips' findings (resampled, noted) are no problems: the count says how many recordings were left out
    lines = [
        f"{len(clips)} clips usable ({sum(c.seconds for c in clips) / 60:.1f} min), {left_out} left out, "
        f"{len(problems) - left_out} notes on kept clips",
        "",
    ]
    if problems:
        lines += ["| file | issue | what | kept |", "|---|---|---|---|"]
        lines += [f"| {p.file} | {p.issue} | {p.message} | {'no' if p.dropped else 'yes'} |" for p in problems]
    return "\n".join(lines) + "\n"


def write_clean_clips(clips: list[Clip], out: Path, target_sr: int) -> None:
    """Mono float32 wavs at `target_sr` under OUT/data/clips and their metadata.csv. A clip peaking over full scale
    (a float recording) is scaled down (`build_corpus.fit_full_scale`): the build would clip it."""
    import csv

    import soundfile as sf
    from build_corpus import fit_full_scale, resample

    out.mkdir(parents=True, exist_ok=True)
    with (out / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "text", "speaker_id"])
        for index, clip in enumerate(clips):
            audio, sr = sf.read(str(clip.path), dtype="float32", always_2d=True)
            audio = audio.mean(axis=1)
            if sr != target_sr:
                audio = resample(audio, sr, target_sr)
            audio, _ = fit_full_scale(audio)  # the build would clip it
            name = f"clips/{index:05d}_{clip.path.stem}.wav"
            (out / "clips").mkdir(exist_ok=True)
            sf.write(str(out / name), audio, target_sr, subtype="FLOAT")
            writer.writerow([name, clip.text, clip.speaker])


def load_audio_dataset(source: str, split: str):
    """A `datasets.Dataset`: a folder saved with `save_to_disk` (a Dataset, or a DatasetDict and its `split`) or a
    Hub dataset id (`load_dataset(source, split=split)`)."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(source)
    if path.is_dir():
        if not any((path / name).is_file() for name in ("dataset_info.json", "dataset_dict.json", "state.json")):
            raise SystemExit(
                f"{source}: not a dataset saved with save_to_disk; for a folder of recordings leave out --dataset"
            )
        ds = load_from_disk(str(path))
    else:
        try:
            ds = load_dataset(source, split=split)
        except (ConnectionError, FileNotFoundError, ValueError) as error:  # offline, unknown id, bad split, ...
            raise SystemExit(
                f"{source}: no such local folder, and loading it as a Hub dataset failed: {error}"
            ) from None
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise SystemExit(f"{source}: no split {split!r}; it has {sorted(ds)} (choose one with --split)")
        ds = ds[split]
    return ds


def publish_clip_folder(tmp: Path, rows: list, folder: Path) -> None:
    """Write `rows` (file_name, text, speaker_id) as tmp/metadata.csv, then move `tmp` to `folder` in one rename, so
    an interrupted run never leaves a half-written folder that a rerun would take as finished."""
    import csv

    with (tmp / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "text", "speaker_id"])
        writer.writerows(rows)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def dataset_to_folder(
    ds, folder: Path, text_column: str, audio_column: str, speaker_column: str | None, text_optional: bool = False
) -> None:
    """Write every row of an audio dataset as `NNNNN.wav` listed with its transcript and speaker in a metadata.csv,
    so that it goes through the same validation as a folder of recordings. Rows whose audio cannot be decoded are
    written as empty files, which the validation reports as unreadable. With `text_optional` (recordings are
    transcribed), a dataset without the text column is written with empty transcripts. The audio column is a
    `datasets` Audio column, or plain sample arrays next to a `sampling_rate` column (the layout of
    `examples/build_corpus.py`'s corpora)."""

    import soundfile as sf
    from build_corpus import _decode_audio_value
    from datasets import Audio

    has_text = text_column in ds.column_names
    required = (audio_column, speaker_column) if text_optional else (text_column, audio_column, speaker_column)
    missing = [c for c in required if c and c not in ds.column_names]
    if missing:
        raise SystemExit(
            f"dataset columns {ds.column_names} lack {missing}: name them with --text-column / --audio-column"
            " / --speaker-column" + ("" if text_optional else " (or pass --asr-model to transcribe the recordings)")
        )
    if isinstance(ds.features.get(audio_column), Audio):
        ds = ds.cast_column(audio_column, Audio(decode=False))  # soundfile decodes; torchcodec is not needed
    rate_column = "sampling_rate" if "sampling_rate" in ds.column_names else None
    if len(ds) and not isinstance(ds[0][audio_column], dict) and rate_column is None:
        raise SystemExit(
            f"dataset column {audio_column!r} holds plain sample arrays and the dataset has no 'sampling_rate' column "
            "to say their rate: add one, or cast the column to datasets' Audio(sampling_rate=...)"
        )
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    rows = []
    for index, row in enumerate(ds):
        name = f"{index:05d}.wav"
        try:
            audio, sr = _decode_audio_value(row[audio_column], row[rate_column] if rate_column else None)
            sf.write(str(tmp / name), audio, sr)
        except Exception:  # noqa: BLE001 - any decoding failure is reported per clip by the validation
            (tmp / name).write_bytes(b"")
        text = row[text_column] if has_text else None
        speaker = str(row[speaker_column]) if speaker_column else "speaker"
        rows.append((name, "" if text is None else str(text), speaker))
    publish_clip_folder(tmp, rows, folder)


# ----------------------------------------------------------------------------------------------------------------------
# 1b. replay: speech of the kind the base model learnt from, mixed in so it keeps following new text


REPLAY_PER_SPEAKER = 4  # utterances per replay speaker, so that prompt/target pairs of one speaker exist


def write_replay_clips(folder: Path, count: int, target_sr: int, seed: int, exclude: set[str]) -> None:
    """`count` utterances of espeak-ng random-variant speakers (`REPLAY_PER_SPEAKER` each), on sentences of the
    `fortunes` package that are not among `exclude`, as wavs at `target_sr` + metadata.csv (file_name, text,
    speaker_id). Nothing is downloaded: espeak-ng and fortunes are system packages (setup.sh installs them)."""
    import soundfile as sf
    from build_corpus import prepare_audio
    from corpus.sentences import load_sentences
    from corpus.voices import VoiceBank, synthesize

    if (folder / "metadata.csv").is_file():
        return
    excluded = {" ".join(text.lower().split()) for text in exclude}
    sentences = [t for t in load_sentences(seed=seed, max_words=16) if " ".join(t.lower().split()) not in excluded]
    if len(sentences) < count:
        raise SystemExit(f"--replay {count}: only {len(sentences)} replay sentences are available")
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "clips").mkdir(parents=True)
    speakers = -(-count // REPLAY_PER_SPEAKER)
    bank = VoiceBank(tmp / "espeak", speakers, seed=seed, prefix="r")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for index, text in enumerate(sentences[:count]):
            voice = bank[index // REPLAY_PER_SPEAKER]
            wav = Path(work) / "say.wav"
            synthesize(text, voice, wav)
            audio, sr = sf.read(str(wav), dtype="float32")
            name = f"clips/{index:05d}.wav"
            sf.write(str(tmp / name), prepare_audio(audio, sr, target_sr), target_sr, subtype="FLOAT")
            rows.append([name, text, f"replay-{voice.name}"])
    shutil.rmtree(tmp / "espeak")
    publish_clip_folder(tmp, rows, folder)


# ----------------------------------------------------------------------------------------------------------------------
# 2. corpus with features (build_corpus.py's code)


def hold_out_sentences(rows: list[dict], voice: str, holdout: int, seed: int) -> tuple[set[int], set[int]]:
    """(held-out rows, rows left out of training) of the metadata rows `rows`: about `holdout` clips of speaker
    `voice`, whole sentences at a time. Every clip of a held-out sentence (text compared as normalised: case and
    punctuation aside) is held out with it, so the evaluation asks for sentences training never saw; other speakers'
    clips of a held-out sentence are left out of training. Sentences are taken in a seeded random order while they fit
    in `holdout`; at least one clip of `voice` and two clips in all stay in training. The count is printed when
    keeping sentences whole made it differ from `holdout`."""
    from collections import Counter

    from eval_lib.metrics import normalize_text

    texts = [normalize_text(row["text"]) for row in rows]
    order = np.random.default_rng(seed).permutation(len(rows))
    own = [int(i) for i in order if rows[i]["speaker_id"] == voice]
    sentences: dict[str, list[int]] = {}  # in the order their first clip was drawn
    for i in own:
        sentences.setdefault(texts[i], []).append(i)
    of_text = Counter(texts)  # clips of each sentence, all speakers': a held-out sentence takes them all from training
    limit = max(1, min(holdout, len(rows) - 2, len(own) - 1))
    held: list[int] = []
    trained = len(rows)
    for clips in sentences.values():
        if len(held) + len(clips) <= limit and trained - of_text[texts[clips[0]]] >= 2:
            held += clips
            trained -= of_text[texts[clips[0]]]
    if not held:  # every sentence has more clips than may be held out: the smallest that leaves enough to train on
        fits = [c for c in sentences.values() if len(c) < len(own) and len(rows) - of_text[texts[c[0]]] >= 2]
        if not fits:
            said = (
                f"every clip of speaker {voice} reads the same sentence ({rows[own[0]]['text']!r})"
                if len(sentences) == 1
                else f"no sentence of speaker {voice} can be held out with all its clips and leave 2 to train on"
            )
            raise SystemExit(
                f"{said}: the evaluation holds out whole sentences, which training never sees; record clips of more "
                "different sentences"
            )
        held = min(fits, key=len)
    held_texts = {texts[i] for i in held}
    left_out = {i for i in range(len(rows)) if texts[i] in held_texts and rows[i]["speaker_id"] != voice}
    if len(held) != holdout:
        reasons = []
        if limit < holdout:
            reasons.append(f"at most {limit} can be, as one clip of the voice and two in all stay in training")
        if len(held) != limit:
            reasons.append("sentences are held out whole, every clip of each (a sentence recorded twice counts twice)")
        print(
            f"{len(held)} clip{'' if len(held) == 1 else 's'} of {len(held_texts)} sentence"
            f"{'' if len(held_texts) == 1 else 's'} held out, not --holdout {holdout}: {'; '.join(reasons)}",
            flush=True,
        )
    return set(held), left_out


def build_features(
    clean: Path,
    data: Path,
    base_processor,
    holdout: int,
    seed: int,
    min_sec: float,
    max_sec: float,
    replay: Path | None = None,
):
    """The cleaned clips as a corpus (train / validation = held out) with the base model's log-mel features; the
    clips of `replay` (a folder from [`write_replay_clips`]) join the training split only."""
    import csv
    from collections import Counter

    from build_corpus import add_features, convert_speech_dataset, save_feature_artifacts
    from datasets import Dataset, DatasetDict, concatenate_datasets

    def read_rows(folder: Path) -> list[dict]:
        with (folder / "metadata.csv").open(newline="", encoding="utf-8") as f:
            return [{**row, "file_name": str(folder / row["file_name"])} for row in csv.DictReader(f)]

    rows = read_rows(clean)
    # the held-out clips are all of one speaker, the one with the most clips (the voice being fine-tuned; the first
    # listed of those with as many): the evaluation prompts with one held-out clip and asks for another of the same
    # speaker, and the first is the voice's default prompt. One of their clips at least stays in training.
    counts = Counter(row["speaker_id"] for row in rows)
    voice = max(counts, key=counts.get)
    held, left_out = hold_out_sentences(rows, voice, holdout, seed)
    if len(counts) > 1:
        print(
            f"{len(counts)} speakers: the voice is speaker {voice}'s (the most clips, {counts[voice]} of {len(rows)}); "
            f"{len(held)} of them are held out for the evaluation and the voice's default prompt",
            flush=True,
        )
    if left_out:
        names = ", ".join(Path(rows[i]["file_name"]).name for i in sorted(left_out))
        print(
            f"left out of training: {names} (other speakers' clips of a held-out sentence: the evaluation asks for "
            "sentences training never saw)",
            flush=True,
        )
    fe = base_processor.feature_extractor
    fe_kwargs = {
        k: v
        for k, v in fe.to_dict().items()
        if k in ("feature_size", "sampling_rate", "n_fft", "hop_length", "f_min", "f_max", "log_floor", "win_length")
    }

    def convert(picked: list[dict], source: str):
        ds = Dataset.from_dict(
            {
                "audio": [{"path": r["file_name"]} for r in picked],
                "text": [r["text"] for r in picked],
                "speaker_id": [r["speaker_id"] for r in picked],
            }
        )
        return convert_speech_dataset(
            ds,
            text_column="text",
            audio_column="audio",
            speaker_column="speaker_id",
            target_sr=fe.sampling_rate,
            min_sec=min_sec,
            max_sec=max_sec,
            source=source,
        )

    splits, dropped = {}, []
    for split, index in (("train", set(range(len(rows))) - held - left_out), ("validation", held)):
        picked = [rows[i] for i in sorted(index)]
        splits[split] = convert(picked, f"finetune:{split}")
        kept = set(splits[split]["text"])
        dropped += [Path(r["file_name"]).name for r in picked if r["text"] not in kept]
    if dropped:  # trimming their leading and trailing silence took them under --min-sec
        print(f"left out after trimming silence (now under --min-sec {min_sec:g} s): {', '.join(dropped)}", flush=True)
    if len(splits["validation"]) < 1 or len(splits["train"]) < 2:
        raise SystemExit(
            f"after trimming leading and trailing silence, {len(dropped)} clips were under --min-sec {min_sec:g} s "
            f"({', '.join(dropped)}), which leaves {len(splits['train'])} training and {len(splits['validation'])} "
            "held-out clips: record longer clips, or lower --min-sec"
        )
    if replay is not None:
        splits["train"] = concatenate_datasets([splits["train"], convert(read_rows(replay), "finetune:replay")])
    dsd = add_features(DatasetDict(splits), fe_kwargs, 1)
    # saved aside and renamed into place when complete (as train.py does its checkpoints): save_to_disk writes
    # dataset_dict.json before the splits, so an interrupted save in place would look like a finished corpus
    tmp = data.with_name(data.name + ".partial")
    if tmp.exists():  # left by an interrupted run
        shutil.rmtree(tmp)
    dsd.save_to_disk(str(tmp))
    save_feature_artifacts(dsd, fe_kwargs, tmp)
    if data.exists():  # a half-saved corpus of an older version
        shutil.rmtree(data)
    tmp.rename(data)
    return dsd


def corpus_built(data: Path) -> bool:
    """Whether OUT/data is a finished corpus: feature_stats.json is written last (it also tells a corpus that an older
    version left half-saved)."""
    return (data / "feature_stats.json").is_file()


# ----------------------------------------------------------------------------------------------------------------------
# 3.-5. training, export, evaluation, report


def train_config(args, data: Path, run: Path) -> dict:
    config = {
        "dataset": str(data),
        "output_dir": str(run),
        "init_from": str(args.base),
        "max_steps": args.max_steps,
        # LoRA: 3e-3 gained the most likeness and kept the most words of 1e-3, 2e-3 and 3e-3 on held-aside voices
        "learning_rate": args.learning_rate or (3e-4 if args.full else 3e-3),
        "min_lr_ratio": 0.1,
        "warmup_steps": min(20, max(1, args.max_steps // 10)),
        "decay_start": 0.3,
        "max_batch_frames": args.max_batch_frames,
        "max_example_frames": min(800, args.max_batch_frames),
        "pair_prob": 0.5,
        "ema_decay": 0.98,
        "checkpoint_every": max(1, min(50, args.max_steps)),
        "keep_checkpoints": 1,
        "eval_every": args.max_steps,
        "log_every": max(1, min(10, args.max_steps)),
        "eval_utterances": 4,
        "seed": args.seed,
        "num_threads": args.threads,
    }
    if not args.full:
        config["lora"] = {"rank": args.rank, "alpha": args.alpha or 2 * args.rank, "targets": args.targets}
        if args.dora:
            config["lora"]["use_dora"] = True
        if args.train_norms:
            config["lora"]["train_norms"] = True
    return config


def export_voice(args, run: Path, voice: Path, prompt_wav: str, prompt_text: str) -> dict:
    """The base pipeline with the fine-tuning built in (adapter merged, or the fine-tuned weights) and a default
    voice; returns the adapter summary (LoRA) or {}."""
    import soundfile as sf
    import torch

    from modeling_ditar import DiTARForConditionalGeneration, DiTARPipeline

    pipe = DiTARPipeline.from_pretrained(args.base)
    if pipe.model.candidate_locdit is not None:  # distilled from the base's LocDiT, which the fine-tuning changed
        pipe.model.remove_candidate_locdit()
        print("the base's candidate LocDiT is left out: it was distilled from the model before fine-tuning", flush=True)
    summary = {}
    if args.full:
        pipe.model = DiTARForConditionalGeneration.from_pretrained(run / "final" / "model").eval()
        pipe.register_modules(model=pipe.model)
    else:
        adapter = Path(args.out) / "adapter"
        if adapter.exists():
            shutil.rmtree(adapter)
        shutil.copytree(run / "final" / "adapter", adapter)
        pipe.load_lora_weights(adapter, adapter_name="voice")
        summary = pipe.model.adapter_summary("voice")
        summary["file_mb"] = (adapter / "adapter_model.safetensors").stat().st_size / 1e6
        with torch.no_grad():
            pipe.model.merge_and_unload()
    audio, sr = sf.read(prompt_wav, dtype="float32")
    pipe.set_default_voice(audio, prompt_text, sampling_rate=sr)
    pipe.save_pretrained(voice)
    return summary


def eval_available() -> str | None:
    """None when the evaluation can run, else why not."""
    missing = [m for m in ("faster_whisper", "resemblyzer") if importlib.util.find_spec(m) is None]
    return (
        f"the eval extra is not installed (missing {', '.join(missing)}): pip install -e '.[eval]'" if missing else None
    )


def why_no_evaluation_case(held) -> str | None:
    """None when evaluate.py can make a case of the held-out clips (`held`: the corpus's validation split), else why
    not: a case prompts with one held-out clip and asks for the sentence of another of the same speaker (evaluate.py
    picks them with the same `select_pairs`, and stops when it finds none)."""
    from eval_lib.cases import select_pairs

    durations = [float(d) for d in held["duration"]]
    if select_pairs(list(held["speaker_id"]), list(held["text"]), durations, 1):
        return None
    clips = f"{len(held)} held-out clip{'' if len(held) == 1 else 's'}"
    return (
        f"no evaluation case could be made from the {clips} (a case takes two held-out clips of one speaker with "
        "different sentences: one is the prompt, the other the sentence to say); hold out more clips with --holdout, "
        "of different sentences"
    )


def run_evaluation(args, data: Path, voice: Path, out: Path) -> dict:
    evaluate = [sys.executable, str(HERE / "evaluate.py")]
    cases = out / "eval" / "cases.jsonl"
    if not cases.is_file():
        _run(evaluate + ["--make-cases-from", str(data), "--split", "validation", "--num-cases", "20", "--out", cases])
    extra = ["--threads", str(args.threads)] + (["--dnsmos"] if args.dnsmos else [])
    # your own transcripts hold numbers, symbols, contractions and spellings that Whisper writes its own way: score
    # with its normaliser where its spelling map is installed (the eval extra brings it)
    if importlib.util.find_spec("whisper_normalizer") is not None:
        extra += ["--text-normalizer", "whisper"]
    results = {}
    for key, rows, pipeline, label in (
        ("before", "gt,model", args.base, "base"),
        ("after", "model", str(voice), "fine-tuned"),
    ):
        target = out / "eval" / key
        if not (target / "results.json").is_file():
            _run(
                evaluate
                + ["--cases", cases, "--rows", rows, "--pipeline", pipeline, "--label", label, "--out", target]
                + extra
            )
        results[key] = json.loads((target / "results.json").read_text())
    return results


def _run(command: list) -> None:
    command = [str(c) for c in command]
    print("+ " + " ".join(command), flush=True)
    try:
        subprocess.run(command, check=True)  # in the caller's folder: the paths given are relative to it
    except subprocess.CalledProcessError as error:  # its own message is above, in its output
        name = Path(command[1]).name
        raise SystemExit(f"{name} stopped with exit status {error.returncode} (its message is above)") from None


def write_report(out: Path, args, clips, problems, dsd, summary: dict, results: dict | None, note: str | None) -> str:
    from collections import Counter

    lines = [
        f"# Fine-tuning report: {Path(args.recordings).name}",
        "",
        f"Base: `{args.base}`. Mode: {'full fine-tuning' if args.full else f'LoRA rank {args.rank} on {args.targets}'}"
        f", {args.max_steps} steps. Data: {len(dsd['train']) - args.replay} training clips"
        f"{f' + {args.replay} replay utterances (espeak-ng)' if args.replay else ''}, "
        f"{len(dsd['validation'])} held out "
        f"({sum(p.dropped for p in problems)} recordings left out, {sum(not p.dropped for p in problems)} notes on "
        "kept clips: see validation.md).",
        "",
    ]
    speakers = Counter(clip.speaker for clip in clips)
    voice = dsd["validation"][0]["speaker_id"] if len(dsd["validation"]) else None
    if len(speakers) > 1 and voice is not None:
        lines += [
            f"Voice: speaker {voice} ({speakers.get(voice, 0)} of {len(clips)} clips; the speaker with the most). The "
            "held-out clips are theirs: the voice's default prompt is one, and the evaluation prompts with them and "
            "asks for their sentences.",
            "",
        ]
    if summary:
        lines += [
            f"Adapter: {summary['adapter_parameters']:,} parameters ({100 * summary['fraction']:.2f}% of the "
            f"{summary['base_parameters']:,} of the model), {summary['file_mb']:.2f} MB (`adapter/`).",
            "",
        ]
    if results:
        lines += ["| system | SIM to prompt | WER | DNSMOS OVRL | cases |", "|---|---|---|---|---|"]
        for key in ("before", "after"):
            for row in results[key]["rows"]:
                dnsmos = next((v for k, v in row.items() if "ovrl" in k.lower() and isinstance(v, float)), None)
                lines.append(
                    f"| {row['name']} | {_fmt(row.get('sim_prompt'))} | {_fmt(row.get('wer'), percent=True)} | "
                    f"{_fmt(dnsmos)} | {row['cases']} |"
                )
        lines += ["", "Audio samples: `eval/before/wavs/`, `eval/after/wavs/` (one file per held-out case).", ""]
    else:
        lines += [f"Evaluation skipped: {note}.", ""]
    lines += [
        "Use it:",
        "",
        "```bash",
        f'ditar synthesize "Hello there." --model {out / "voice"} -o hello.wav',
        "```",
        "",
    ]
    if summary:
        lines += [
            "or load the adapter onto the base pipeline:",
            "",
            "```python",
            f'pipe = DiTARPipeline.from_pretrained("{args.base}")',
            f'pipe.load_lora_weights("{out / "adapter"}", adapter_name="voice")',
            "```",
            "",
        ]
    text = "\n".join(lines)
    (out / "report.md").write_text(text)
    return text


def _fmt(value, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}"


def build_parser() -> argparse.ArgumentParser:
    from modeling_ditar.lora import DEFAULT_RANK, DEFAULT_TARGETS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "recordings",
        help="folder of wav/flac/ogg/opus/mp3 with .txt transcripts, or with a metadata.csv; with --dataset a datasets "
        "folder (save_to_disk) or a Hub dataset id",
    )
    p.add_argument("--dataset", action="store_true", help="`recordings` is a datasets audio dataset")
    p.add_argument("--split", default="train", help="--dataset: the split to use")
    p.add_argument(
        "--text-column",
        default=None,
        help="the transcript column: --dataset's (default text), or a metadata.csv's (default: the first of text, "
        "normalized_text, transcription, transcript, sentence)",
    )
    p.add_argument("--audio-column", default="audio", help="--dataset: the audio column")
    p.add_argument(
        "--speaker-column",
        default=None,
        help="the speaker column: --dataset's (default: none, one speaker), or a metadata.csv's (default: the first "
        "of speaker_id, speaker, speaker_name, client_id)",
    )
    p.add_argument(
        "--one-speaker",
        action="store_true",
        help="every clip is one voice's, whatever its subfolder or speaker column says (e.g. one person's session "
        "folders, which are otherwise taken for one speaker each)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder: a new or empty one (not the recordings folder); re-running with the same one resumes",
    )
    p.add_argument("--base", default=DEFAULT_BASE, help="pipeline folder to fine-tune (default: the shipped default)")
    p.add_argument("--full", action="store_true", help="train every weight instead of a LoRA adapter")
    p.add_argument("--rank", type=int, default=DEFAULT_RANK, help="LoRA rank (default %(default)s)")
    p.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default 2 x rank)")
    p.add_argument(
        "--targets",
        default=DEFAULT_TARGETS,
        help="LoRA targets joined by '+': backbone, backbone-mlp, locdit, encoder, io (LocDiT's and the encoder's "
        "input/output projections), heads (CTC and stop heads), or all (default: all but heads)",
    )
    p.add_argument(
        "--dora", action="store_true", help="DoRA: LoRA plus a learnt magnitude per output row (peft use_dora)"
    )
    p.add_argument(
        "--train-norms",
        action="store_true",
        help="also train the normalisation layers' scales and shifts (saved in the adapter; 8,448 parameters more "
        "on the shipped default)",
    )
    p.add_argument(
        "--replay",
        type=int,
        default=0,
        help="mix this many synthetic espeak-ng utterances (new sentences, random voices) into the training clips, "
        "so the model keeps following new text while it learns the voice",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=300,
        help="training steps (default %(default)s); to train longer, use a new --out (a run's settings are fixed)",
    )
    p.add_argument("--learning-rate", type=float, default=None, help="default 3e-3 (LoRA) or 3e-4 (--full)")
    p.add_argument("--max-batch-frames", type=int, default=1600, help="feature frames per batch (default %(default)s)")
    p.add_argument(
        "--holdout",
        type=int,
        default=4,
        help="clips held out for the evaluation, all of the speaker with the most clips (at least 1: the voice's "
        "prompt; 2 or more of different sentences for the evaluation; default %(default)s); whole sentences are held "
        "out, every clip of each, so the count may differ when a sentence was recorded more than once",
    )
    p.add_argument(
        "--asr-model",
        metavar="MODEL",
        help="transcribe recordings that have no transcript with this speech recognition model (a Hub id such as "
        "openai/whisper-base, or a local folder); without it they are left out. Check the transcripts in "
        "OUT/validation.md: a wrong one teaches the model wrong words",
    )
    p.add_argument("--min-sec", type=float, default=1.0, help="shorter clips are left out (default %(default)s)")
    p.add_argument("--max-sec", type=float, default=15.0, help="longer clips are left out (default %(default)s)")
    p.add_argument("--eval", choices=["auto", "none"], default="auto", help="none: skip the before/after evaluation")
    p.add_argument("--dnsmos", action="store_true", help="also score DNSMOS (speechmos)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    return p


def check_arguments(args) -> None:
    """Refuse settings that cannot work before any data is read or written, naming the fix."""
    if args.full and (args.dora or args.train_norms):
        flag = "--dora" if args.dora else "--train-norms"
        raise SystemExit(f"{flag} shapes a LoRA adapter; --full trains every weight: choose one")
    if args.replay < 0:
        raise SystemExit(f"--replay {args.replay}: give a number of utterances >= 0")
    if args.max_steps < 1:
        raise SystemExit(f"--max-steps {args.max_steps}: give at least 1")
    for flag, value in (("--max-batch-frames", args.max_batch_frames), ("--threads", args.threads)):
        if value < 1:
            raise SystemExit(f"{flag} {value}: give at least 1")
    if args.holdout < 1:  # the first held-out clip becomes the fine-tuned voice's default prompt
        raise SystemExit(f"--holdout {args.holdout}: give at least 1 (a held-out clip is the new voice's prompt)")
    if not 0 <= args.min_sec < args.max_sec:
        raise SystemExit(
            f"--min-sec {args.min_sec:g} --max-sec {args.max_sec:g}: give 0 <= --min-sec < --max-sec (seconds per clip)"
        )
    for flag, value in (("--learning-rate", args.learning_rate), ("--alpha", args.alpha)):
        if value is not None and not (value > 0 and math.isfinite(value)):  # 0 would quietly mean the default
            raise SystemExit(f"{flag} {value:g}: give a finite number > 0, or leave it out for the default")
    if not args.full:
        if args.rank < 1:
            raise SystemExit(f"--rank {args.rank}: give a LoRA rank >= 1")
        from modeling_ditar.lora import lora_target_modules

        try:
            lora_target_modules(args.targets)
        except ValueError as error:
            raise SystemExit(f"--targets: {error}") from None
    if not args.dataset and not Path(args.recordings).is_dir():
        raise SystemExit(
            f"{args.recordings}: no such folder of recordings (for a `datasets` dataset or a Hub id, add --dataset)"
        )
    if not Path(args.base).is_dir():
        raise SystemExit(
            f"--base {args.base}: no such pipeline folder (one saved with DiTARPipeline.save_pretrained; "
            "leave --base out for the shipped model)"
        )
    if not (Path(args.base) / "model_index.json").is_file() and (Path(args.base).parent / "model_index.json").is_file():
        raise SystemExit(
            f"--base {args.base}: a part of a pipeline; give the pipeline folder, {Path(args.base).parent}"
        )
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise SystemExit(f"--out {args.out}: a file is in the way; give a folder (it is created if missing)")
    # a run replaces folders in its --out (data/, adapter/, ...): never those of a folder it did not make
    out, recordings = Path(args.out).resolve(), Path(args.recordings).resolve()
    if Path(args.recordings).is_dir() and recordings.is_relative_to(out):
        raise SystemExit(
            f"--out {args.out}: {'is' if recordings == out else 'holds'} the recordings folder; give a new or empty "
            "folder outside it (a run writes and replaces folders such as data/ and adapter/ in its --out)"
        )
    # (hidden files such as .DS_Store do not make a folder one of other files)
    if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()) and not is_run_folder(out):
        raise SystemExit(
            f"--out {args.out}: holds other files and is no run of this script (it has no inputs.json); give a new or "
            "empty folder (a run writes and replaces folders such as data/ and adapter/ in its --out)"
        )


def is_run_folder(out: Path) -> bool:
    """Whether `out` is a run of this script, which it may resume and replace folders in: it writes inputs.json into
    a new run first (versions before that left validation.md beside a corpus)."""
    built = (out / "validation.md").is_file() and (out / "data" / "dataset_dict.json").is_file()
    return (out / "inputs.json").is_file() or built


def open_run_folder(out: Path) -> None:
    """Create `out` as a run (an empty inputs.json marks it, so a run stopped before the corpus is resumed, not
    refused) and check that it can be written: one message naming it and the reason, not a traceback later."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not is_run_folder(out):  # check_arguments let only a new or empty folder through
            (out / "inputs.json").write_text("{}\n")
        with tempfile.TemporaryFile(dir=out):  # a finished run in a read-only folder writes nothing before this
            pass
    except OSError as error:
        raise SystemExit(
            f"--out {out}: cannot write there ({error.strerror or error}); give a folder you can create and write to"
        ) from None


def check_same_inputs(out: Path, args, clips: list[Clip], config: dict) -> None:
    """A re-run in the same `--out` resumes it, so it must have the same inputs: the recordings (path, transcript, size,
    modification time), the corpus settings and the training settings are recorded in `inputs.json`, and a re-run
    with other ones is refused (it would reuse the old corpus or resume the old run under the new report)."""
    recordings = hashlib.sha256()
    for clip in clips:
        stat = clip.path.stat()
        recordings.update(f"{clip.path.resolve()}\0{clip.text}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    corpus = {
        "recordings": recordings.hexdigest(),
        "holdout": args.holdout,
        "seed": args.seed,
        "min_sec": args.min_sec,
        "max_sec": args.max_sec,
        "replay": args.replay,
        "base": str(Path(args.base).resolve()),
    }
    if args.one_speaker:  # recorded only when set: the inputs of runs made before the option stay as they were
        corpus["one_speaker"] = True
    training = {key: value for key, value in config.items() if key != "num_threads"}  # threads change no result
    record = {"corpus": corpus, "training": json.loads(json.dumps(training, default=str))}
    path = out / "inputs.json"
    # only what was already built from them binds a re-run: the corpus, and a started run
    built = {"corpus": corpus_built(out / "data"), "training": (out / "run").is_dir()}
    if path.is_file():
        before = json.loads(path.read_text())
        changed = [
            "the recordings" if key == "recordings" else key
            for part in ("corpus", "training")
            if built[part]
            for key in sorted(set(before.get(part, {})) | set(record[part]))
            if before.get(part, {}).get(key) != record[part].get(key)
        ]
        if changed:
            what = ", ".join(changed)
            raise SystemExit(
                f"{out} holds a fine-tuning of other inputs (changed: {what}); a re-run in the same --out resumes "
                "it. Use a new --out, or delete this one to start over."
            )
    elif any(built.values()):
        print(
            f"{out}: no inputs.json (made by an older version); its corpus and run are reused as they are", flush=True
        )
    path.write_text(json.dumps(record, indent=2))


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    check_arguments(args)
    from corpus.recordings_metadata import ColumnChoice, speaker_column_note

    from modeling_ditar import DiTARProcessor

    base = Path(args.base)
    try:
        processor = DiTARProcessor.from_pretrained(base / "processor" if (base / "processor").is_dir() else base)
    except (OSError, ValueError) as error:
        raise SystemExit(f"--base {args.base}: no DiTAR processor could be loaded from it ({error})") from None
    out = Path(args.out)
    open_run_folder(out)
    target_sr = processor.feature_extractor.sampling_rate

    recordings = args.recordings
    if args.dataset:
        recordings = out / "source"
        if not (recordings / "metadata.csv").is_file():
            ds = load_audio_dataset(args.recordings, args.split)
            note = None if args.speaker_column or args.one_speaker else speaker_column_note(ds.column_names)
            if note:
                print(note, flush=True)
            dataset_to_folder(
                ds,
                recordings,
                args.text_column or "text",
                args.audio_column,
                args.speaker_column,
                text_optional=args.asr_model is not None,
            )
    text_check, language_check = text_checks(processor)
    transcriber = None
    if args.asr_model is not None:
        from modeling_ditar import PromptTranscriber

        try:
            transcriber = PromptTranscriber(args.asr_model)
        except OSError as error:
            raise SystemExit(f"--asr-model: {error}") from None
    clips, problems = validate_recordings(
        recordings,
        target_sr,
        args.min_sec,
        args.max_sec,
        text_check,
        transcriber=transcriber,
        skip=None if args.dataset else out,  # the dataset's clips are written into out/source
        language_check=language_check,
        # the names of --dataset's columns were read when its rows were written out
        columns=None if args.dataset else ColumnChoice(args.text_column, args.speaker_column),
        one_speaker=args.one_speaker,
    )
    table = validation_table(clips, problems)
    (out / "validation.md").write_text(table)
    print(table, flush=True)
    if len(clips) < args.holdout + 2:
        fewer = " or hold out fewer (--holdout 1)" if args.holdout > 1 else ""
        raise SystemExit(
            f"{args.recordings}: {len(clips)} usable clips (see validation.md); at least --holdout + 2 = "
            f"{args.holdout + 2} are needed ({args.holdout} held out, 2 to train on): add recordings{fewer}"
        )

    data, clean, run = out / "data", out / "data_clean", out / "run"
    check_same_inputs(out, args, clips, train_config(args, data, run))
    replay = out / "replay" if args.replay else None
    if not corpus_built(data):
        write_clean_clips(clips, clean, target_sr)
        if replay is not None:
            write_replay_clips(replay, args.replay, target_sr, args.seed, {clip.text for clip in clips})
        build_features(clean, data, processor, args.holdout, args.seed, args.min_sec, args.max_sec, replay)
    from datasets import load_from_disk

    dsd = load_from_disk(str(data))
    replayed = sum(voice == "finetune:replay" for voice in dsd["train"]["voice"])
    if replayed != args.replay:
        raise SystemExit(
            f"{data} was built with --replay {replayed}, not {args.replay}: use that value, or a new --out"
        )
    extra = f" and {replayed} replay utterances" if replayed else ""
    held_out = len(dsd["validation"])
    print(f"corpus: {len(dsd['train']) - replayed} training clips{extra}, {held_out} held out", flush=True)

    done = run / "final" / ("model" if args.full else "adapter")
    if not done.is_dir():
        config = out / "train_config.json"
        config.write_text(json.dumps(train_config(args, data, run), indent=2))
        resume = ["--resume"] if (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()) else []
        _run([sys.executable, HERE / "train.py", "--config", config, *resume])

    held = dsd["validation"]
    prompt = out / "prompt.wav"
    import soundfile as sf

    sf.write(str(prompt), np.asarray(held[0]["audio"], dtype=np.float32), held[0]["sampling_rate"])
    summary = export_voice(args, run, out / "voice", str(prompt), held[0]["text"])
    if summary:
        (out / "adapter_summary.json").write_text(json.dumps(summary, indent=2))

    note = "--eval none" if args.eval == "none" else eval_available()
    if note is None:
        note = why_no_evaluation_case(held)
    results = run_evaluation(args, data, out / "voice", out) if note is None else None
    print(write_report(out, args, clips, problems, dsd, summary, results, note), flush=True)
    return {"summary": summary, "results": results, "problems": problems}


if __name__ == "__main__":
    main()
