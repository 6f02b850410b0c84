#!/usr/bin/env python
"""What an automatic transcript of the voice prompt costs: rewrite a case file with Whisper's transcripts as prompts.

    python examples/research/asr_prompt_cases.py data/eval/natval48/cases.jsonl outputs/asr_prompts/natval48

Transcribes every case's `prompt_audio` with Whisper-base (faster-whisper, the weights `examples/evaluate.py` scores
with; English, beam 5) and writes `OUT/cases.jsonl`: the same cases, audio paths pointing at the original files, with
`prompt_text` replaced by the transcript (the exact one kept as `exact_prompt_text`). It prints the transcripts' own
word error rate against the exact transcripts, case by case where they differ. Evaluate both files with the same
settings and pair them (`examples/research/paired_eval.py A/results.json B/results.json`) to see what the generated
speech loses when the user gives no transcript and the pipeline transcribes the prompt.
"""

import argparse
import json
import sys
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval_lib.asr import WhisperASR  # noqa: E402
from eval_lib.cases import load_cases, write_cases  # noqa: E402
from eval_lib.metrics import aggregate_word_stats, word_stats  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", help="JSONL case file (examples/evaluate.py's format)")
    p.add_argument("out", help="folder for the rewritten cases.jsonl and transcripts.json")
    p.add_argument("--threads", type=int, default=1, help="Whisper CPU threads")
    args = p.parse_args(argv)

    cases = load_cases(args.cases)
    asr = WhisperASR(cpu_threads=args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stats, rows = [], []
    for case in cases:
        audio, rate = sf.read(case.prompt_audio, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        heard = asr.transcribe(audio, rate)
        s = word_stats(case.prompt_text, heard)
        stats.append(s)
        rows.append({"id": case.id, "exact": case.prompt_text, "whisper": heard, **s.to_dict()})
        if s.errors:
            print(f"{case.id}: {s.errors} errors\n  exact:   {case.prompt_text}\n  whisper: {heard}")
        case.extra = {**case.extra, "exact_prompt_text": case.prompt_text}
        case.prompt_audio = str(Path(case.prompt_audio).resolve())
        if case.target_audio is not None:
            case.target_audio = str(Path(case.target_audio).resolve())
        case.prompt_text = heard or case.prompt_text  # an empty transcript would make the case unusable
    write_cases(cases, out / "cases.jsonl")
    total = aggregate_word_stats(stats)
    summary = {"asr": asr.describe(), "prompts": len(cases), **total}
    (out / "transcripts.json").write_text(json.dumps({"summary": summary, "cases": rows}, indent=1))
    exact = sum(1 for s in stats if not s.errors)
    print(
        f"{len(cases)} prompts: WER {100 * total['wer']:.1f}% ({total['errors']} errors in {total['ref_words']} "
        f"words), {exact} transcribed without an error -> {out / 'cases.jsonl'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
