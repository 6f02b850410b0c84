#!/usr/bin/env python
"""Out-of-domain evaluation cases: voices the model was never trained on and that espeak-ng did not make.

    python examples/make_ood_cases.py --out data/eval/ood/cases.jsonl
    python examples/evaluate.py --cases data/eval/ood/cases.jsonl --out outputs/eval/ood

Two sources, both offline once fetched:

* flite voices (``apt-get install flite``): for each voice, a prompt sentence and a different target sentence, both
  spoken by flite, so the cases have a ground truth (and a resynthesised ground truth row).
* real recordings: five LibriVox clips of one female reader (Sense and Sensibility, 16 kHz, 3-7 s, with transcripts)
  that ship in the pocketsphinx 5.1.1 source distribution. Each clip prompts for the next clip's transcript, whose
  recording is the ground truth. The sdist (34 MB) comes from the package index with ``pip download`` unless
  ``--librivox-dir`` points at its ``test/data/librivox`` folder.

Sentences for the flite cases come from the corpus's test split (never in training) when ``--sentences-from`` names a
corpus written by build_corpus.py, otherwise from the fortunes file with ``--seed``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_lib.cases import Case, write_cases  # noqa: E402

FLITE_VOICES = ("kal16", "awb", "rms", "slt")  # the 16 kHz ones; `kal` is 8 kHz
POCKETSPHINX_SDIST = "pocketsphinx==5.1.1"
LIBRIVOX_MEMBER = "pocketsphinx-5.1.1/test/data/librivox/"


def target_sentences(sentences_from: str | None, split: str, seed: int, count: int) -> list[str]:
    if sentences_from:
        from datasets import load_from_disk

        texts = list(dict.fromkeys(load_from_disk(sentences_from)[split]["text"]))
    else:
        from corpus.sentences import load_sentences

        texts = load_sentences(seed=seed)
    if len(texts) < count:
        where = f"the {split} split of {sentences_from}" if sentences_from else "the fortunes file"
        fix = " (a larger corpus, or --sentences-from '' for the fortunes file)" if sentences_from else ""
        raise SystemExit(f"need {count} sentences, found {len(texts)} in {where}{fix}")
    return texts[:count]


def flite_say(voice: str, text: str, path: Path) -> None:
    if shutil.which("flite") is None:
        raise SystemExit("flite not found: apt-get install flite (or pass --flite-voices '')")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True, capture_output=True)


def flite_cases(voices: list[str], per_voice: int, sentences: list[str], wav_dir: Path) -> list[Case]:
    cases = []
    for v, voice in enumerate(voices):
        for i in range(per_voice):
            k = 2 * (v * per_voice + i)
            prompt_text, target_text = sentences[k], sentences[k + 1]
            case_id = f"flite-{voice}-{i:02d}"
            prompt, target = wav_dir / f"{case_id}_prompt.wav", wav_dir / f"{case_id}_target.wav"
            flite_say(voice, prompt_text, prompt)
            flite_say(voice, target_text, target)
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


def fetch_librivox(cache: Path) -> Path:
    """The LibriVox clips of the pocketsphinx sdist, downloaded once into `cache`."""
    folder = cache / LIBRIVOX_MEMBER
    if folder.is_dir():
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-q",
                "-d",
                tmp,
                POCKETSPHINX_SDIST,
            ],
            check=True,
        )
        sdist = next(Path(tmp).glob("pocketsphinx-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(LIBRIVOX_MEMBER) and m.isfile()]
            tar.extractall(cache, members=members, filter="data")
    return folder


def librivox_cases(folder: Path, wav_dir: Path) -> list[Case]:
    """Clips are copied next to the cases so the case set stands alone."""
    found = sorted(folder.glob("*.wav"))
    if len(found) < 2:
        raise SystemExit(f"{folder}: expected the LibriVox .wav/.txt pairs of the pocketsphinx sdist")
    wav_dir.mkdir(parents=True, exist_ok=True)
    clips = [Path(shutil.copy(clip, wav_dir / f"librivox-{clip.name}")) for clip in found]
    texts = [" ".join(src.with_suffix(".txt").read_text().split()) for src in found]
    cases = []
    for i, (clip, text) in enumerate(zip(clips, texts, strict=True)):
        j = (i + 1) % len(clips)
        cases.append(
            Case(
                id=f"librivox-{clip.stem[-4:]}",
                prompt_audio=str(clip),
                prompt_text=text,
                target_text=texts[j],
                target_audio=str(clips[j]),
                voice="LibriVox reader (real speech)",
                extra={"source": "librivox"},
            )
        )
    return cases


def main(argv: list[str] | None = None) -> list[Case]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSONL to write; wavs go to wavs/ beside it")
    p.add_argument("--flite-voices", default=",".join(FLITE_VOICES), help="comma-separated; '' for none")
    p.add_argument("--flite-cases-per-voice", type=int, default=3)
    p.add_argument("--sentences-from", default="data/corpus", help="corpus for unseen sentences ('' for fortunes)")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=0, help="fortune shuffle seed when no corpus is given")
    p.add_argument("--librivox-dir", help="pocketsphinx-5.1.1/test/data/librivox (default: pip download, cached)")
    p.add_argument("--no-librivox", action="store_true", help="flite cases only")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "ditar"), help="where the sdist is unpacked")
    args = p.parse_args(argv)

    out = Path(args.out)
    wav_dir = out.parent / "wavs"
    voices = [v for v in args.flite_voices.split(",") if v]
    cases: list[Case] = []
    if voices:
        sentences_from = args.sentences_from if args.sentences_from and Path(args.sentences_from).is_dir() else None
        sentences = target_sentences(
            sentences_from, args.split, args.seed, 2 * len(voices) * args.flite_cases_per_voice
        )
        cases += flite_cases(voices, args.flite_cases_per_voice, sentences, wav_dir)
    if not args.no_librivox:
        folder = Path(args.librivox_dir) if args.librivox_dir else fetch_librivox(Path(args.cache))
        cases += librivox_cases(folder, wav_dir)
    if not cases:
        raise SystemExit("no cases: give flite voices or leave the LibriVox clips in")
    write_cases(cases, out)
    print(f"wrote {len(cases)} cases to {out}")
    return cases


if __name__ == "__main__":
    main()
