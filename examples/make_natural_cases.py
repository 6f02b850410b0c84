#!/usr/bin/env python
"""Natural-voice evaluation set (evaluation-only voices, target sentences training never saw).

    python examples/make_natural_cases.py --out data/eval/natural/cases.jsonl
    python examples/evaluate.py --cases data/eval/natural/cases.jsonl --out outputs/eval/natural --dnsmos

* Every flite voice (``apt-get install flite``): kal (8 kHz diphone), kal16, awb, rms and slt, ``--per-voice`` cases
  each (default 8), prompt and target spoken by flite, so each case has a ground truth. flite's ``awb_time`` is left
  out: it is a limited-domain voice that only speaks clock times.
* Every real recording with a transcript found offline: the five LibriVox clips and
  ``goforward.raw`` of the pocketsphinx 5.1.1 sdist (``pip download``, cached). Each LibriVox clip prompts once for the
  next clip (ground truth = that recording) and once for an unseen sentence (no ground truth); goforward prompts
  for an unseen sentence.

Targets come from the Harvard sentences (``eval_lib/eval_sentences.py``), which are checked against the fortunes
the training corpus reads, so no target is a training sentence. Prompt sentences of flite cases are Harvard
sentences too, never a case's own target.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_lib.cases import Case, write_cases  # noqa: E402
from eval_lib.eval_sentences import HARVARD, HARVARD_MORE  # noqa: E402
from eval_lib.metrics import normalize_text  # noqa: E402
from make_ood_cases import POCKETSPHINX_SDIST, flite_say, librivox_cases  # noqa: E402

#: every voice `flite -lv` lists except the clock-only awb_time
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
SDIST_ROOT = "pocketsphinx-5.1.1/test/data/"
#: real recordings with transcripts in the pocketsphinx sdist besides LibriVox: member -> (transcript, rate)
RAW_RECORDINGS = {"goforward.raw": ("go forward ten meters", 16000)}


def check_unseen(sentences, fortunes_dir: str | None) -> list[str]:
    """The sentences that do not occur among the training text (fortunes). Without the fortunes nothing can be checked,
    and the set would silently keep every sentence: SystemExit naming the folder and the fix."""
    from corpus.sentences import DEFAULT_FORTUNES_DIR, load_sentences

    folder = fortunes_dir or DEFAULT_FORTUNES_DIR
    try:
        seen = {normalize_text(s) for s in load_sentences(folder, seed=0)}
    except (OSError, ValueError) as error:
        detail = "" if isinstance(error, FileNotFoundError) else f" ({error})"
        raise SystemExit(
            f"error: no training text (fortune files) could be read in {folder}{detail}, so the targets cannot be "
            "checked as unseen: install the `fortunes` package (apt-get install fortunes) or pass --fortunes-dir with "
            "the folder of fortune files the training corpus reads"
        ) from None
    return [s for s in sentences if normalize_text(s) not in seen]


def fetch_sdist_data(cache: Path) -> Path:
    """pocketsphinx-5.1.1/test/data (LibriVox clips and the raw recordings), downloaded once into `cache`."""
    root = cache / SDIST_ROOT
    if (root / "librivox").is_dir() and all((root / m).is_file() for m in RAW_RECORDINGS):
        return root
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", tmp]
        subprocess.run([*cmd, POCKETSPHINX_SDIST], check=True)
        sdist = next(Path(tmp).glob("pocketsphinx-*.tar.gz"))
        wanted = [SDIST_ROOT + "librivox/", *(SDIST_ROOT + m for m in RAW_RECORDINGS)]
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and any(m.name.startswith(w) for w in wanted)]
            tar.extractall(cache, members=members, filter="data")
    return root


def flite_natural_cases(voices, per_voice: int, sentences: list[str], wav_dir: Path, say=None) -> list[Case]:
    """`per_voice` cases per voice; case k reads target sentences[k] after the prompt sentence half the pool away."""
    say = say or flite_say
    need = len(voices) * per_voice
    if need > len(sentences) or len(sentences) < 2:
        raise SystemExit(f"{len(voices)} voices x {per_voice} cases need {need} unseen targets, have {len(sentences)}")
    cases = []
    for v, voice in enumerate(voices):
        for i in range(per_voice):
            k = v * per_voice + i
            target_text, prompt_text = sentences[k], sentences[(k + len(sentences) // 2) % len(sentences)]
            case_id = f"flite-{voice}-{i:02d}"
            prompt, target = wav_dir / f"{case_id}-prompt.wav", wav_dir / f"{case_id}-target.wav"
            say(voice, prompt_text, prompt)
            say(voice, target_text, target)
            cases.append(
                Case(
                    id=case_id,
                    prompt_audio=str(prompt),
                    prompt_text=prompt_text,
                    target_text=target_text,
                    target_audio=str(target),
                    voice=f"flite {voice}",
                    extra={"source": "flite"},
                )
            )
    return cases


def real_cases(sdist_data: Path, wav_dir: Path, targets: list[str]) -> list[Case]:
    """LibriVox: next clip (ground truth) and an unseen sentence (prompt only); raw recordings: an unseen sentence."""
    import soundfile as sf

    cases = librivox_cases(sdist_data / "librivox", wav_dir)
    pool = iter(targets)
    for c in list(cases):
        cases.append(
            Case(
                id=f"{c.id}-unseen",
                prompt_audio=c.prompt_audio,
                prompt_text=c.prompt_text,
                target_text=next(pool),
                voice=c.voice,
                extra={"source": "librivox"},
            )
        )
    for member, (text, rate) in RAW_RECORDINGS.items():
        audio = np.fromfile(sdist_data / member, dtype="<i2").astype(np.float32) / 32768
        path = wav_dir / f"real-{Path(member).stem}.wav"
        sf.write(path, audio, rate)
        cases.append(
            Case(
                id=f"real-{Path(member).stem}",
                prompt_audio=str(path),
                prompt_text=text,
                target_text=next(pool),
                voice=f"pocketsphinx test recording {member} (real speech)",
                extra={"source": "real"},
            )
        )
    return cases


def main(argv: list[str] | None = None) -> list[Case]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSONL to write; wavs go to wavs/ beside it")
    p.add_argument("--flite-voices", default=",".join(FLITE_VOICES), help="comma-separated")
    p.add_argument("--per-voice", type=int, default=8, help="cases per flite voice")
    p.add_argument("--sdist-data", help="pocketsphinx-5.1.1/test/data (default: pip download, cached)")
    p.add_argument("--no-real", action="store_true", help="flite cases only")
    p.add_argument(
        "--sentences",
        choices=("harvard-1-5", "harvard-more"),
        default="harvard-1-5",
        help="the sentence pool (harvard-more: 50 other Harvard sentences, for a second set that shares none)",
    )
    p.add_argument(
        "--fortunes-dir",
        default=None,
        help="the training text, to check the targets are unseen (default: the `fortunes` package's folder; "
        "required: the set is not written without it)",
    )
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "ditar"), help="where the sdist is unpacked")
    args = p.parse_args(argv)
    pool = HARVARD if args.sentences == "harvard-1-5" else HARVARD_MORE
    sentences = check_unseen(pool, args.fortunes_dir)  # before anything is written
    out = Path(args.out)
    wav_dir = out.parent / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    voices = [v for v in args.flite_voices.split(",") if v]
    n_flite = len(voices) * args.per_voice
    cases = flite_natural_cases(voices, args.per_voice, sentences, wav_dir) if voices else []
    if not args.no_real:
        data = Path(args.sdist_data) if args.sdist_data else fetch_sdist_data(Path(args.cache))
        cases += real_cases(data, wav_dir, sentences[n_flite:])
    if not cases:
        raise SystemExit("no cases")
    write_cases(cases, out)
    by_source: dict[str, int] = {}
    for c in cases:
        by_source[c.extra.get("source", "?")] = by_source.get(c.extra.get("source", "?"), 0) + 1
    print(f"wrote {len(cases)} cases to {out}: {by_source}")
    return cases


if __name__ == "__main__":
    main()
