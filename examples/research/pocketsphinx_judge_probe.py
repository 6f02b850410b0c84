"""Could a second, independent recogniser judge best-of-K candidates better than the model's own CTC head?

The CTC head reads the backbone, which generated the speech, so it shares the model's blind spots. pocketsphinx (PyPI
`pocketsphinx`, whose wheel carries an English acoustic model, a dictionary and a language model, all trained on human
speech) is a different kind of recogniser altogether: a hidden Markov model over cepstra. This probe scores the
candidates that `candidate_ranking_probe.py --save-candidates` wrote, four ways, and asks which one each would keep:

* ``ps-wer``: free decoding with pocketsphinx's English language model, errors against the target text (the
  evaluation's normaliser); fewest errors wins, ties go to the CTC head's order;
* ``ps-gop``: goodness of pronunciation, the forced alignment to the target text minus an unconstrained phone loop,
  per frame (log-likelihood ratio); highest wins. Words the dictionary lacks are left out of the alignment;
* ``ctc+ps-wer`` and ``ctc+ps-gop``: the sum of each candidate's rank under the CTC head and under the judge.

Whisper's counts and Resemblyzer's SIM come from the ranking probe: they only measure, they never choose.

    python examples/research/candidate_ranking_probe.py --cases data/eval/natval48/cases.jsonl --num-candidates 4 \
        --asr-redecode-loops --threads 2 --save-candidates --out outputs/eval/candidates-natval48
    python examples/research/pocketsphinx_judge_probe.py outputs/eval/candidates-natval48

Writes PROBE/pocketsphinx_judges.json (each candidate's judge scores) and PROBE/pocketsphinx_judges.md.
A probe, not part of the package: `pip install pocketsphinx` first.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/

from eval_lib.metrics import normalize_text, word_stats  # noqa: E402
from eval_lib.systems import read_audio  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from judge_table import oracle_pick, rank_sum_pick, ranks, selection_table  # noqa: E402

SAMPLE_RATE = 16000  # pocketsphinx's English acoustic model


class PocketsphinxJudge:
    """Free decoding, forced alignment and a phone loop with pocketsphinx's English model."""

    def __init__(self):
        import pocketsphinx
        from pocketsphinx import Decoder

        model = Path(pocketsphinx.__file__).parent / "model"
        self.free = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self.align = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self.phones = Decoder(
            samprate=SAMPLE_RATE, loglevel="FATAL", lm=None, allphone=str(model / "en-us-phone.lm.bin")
        )

    @staticmethod
    def _decode(decoder, raw: bytes):
        decoder.start_utt()
        decoder.process_raw(raw, full_utt=True)
        decoder.end_utt()
        return decoder.hyp(), decoder.n_frames()

    def known_words(self, text: str) -> list[str]:
        return [w for w in normalize_text(text).split() if self.free.lookup_word(w) is not None]

    def score(self, wave: np.ndarray, rate: int, target_text: str) -> dict:
        if rate != SAMPLE_RATE:
            raise SystemExit(f"pocketsphinx's model reads {SAMPLE_RATE} Hz audio; these candidates are {rate} Hz")
        raw = (np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        hyp, _ = self._decode(self.free, raw)
        hypothesis = hyp.hypstr if hyp is not None else ""
        stats = word_stats(target_text, hypothesis)
        gop = -math.inf
        words = self.known_words(target_text)
        if words:
            try:
                self.align.set_align_text(" ".join(words))
                aligned, frames = self._decode(self.align, raw)
            except RuntimeError:
                aligned, frames = None, 0
            loop, _ = self._decode(self.phones, raw)
            # Hypothesis.score is exp(total log-likelihood); their logs differ by the alignment's log-likelihood ratio
            if aligned is not None and loop is not None and aligned.score > 0 and loop.score > 0 and frames > 0:
                gop = (math.log(aligned.score) - math.log(loop.score)) / frames
        return {"ps_hypothesis": hypothesis, "ps_errors": stats.errors, "ps_hits": stats.hits, "ps_gop": gop}


def picks(candidates: list[dict]) -> dict[str, int]:
    """The candidate index each selection keeps."""
    n = range(len(candidates))
    ctc = [c["ctc"] for c in candidates]
    ctc_rank = ranks(ctc)
    errors = [c["ps_errors"] + 1e-6 * r for c, r in zip(candidates, ctc_rank, strict=True)]  # ties: the head's order
    gop = [-c["ps_gop"] for c in candidates]
    return {
        "seed 0": 0,
        "CTC head": min(n, key=lambda i: ctc[i]),
        "ps-wer": min(n, key=lambda i: errors[i]),
        "ps-gop": min(n, key=lambda i: gop[i]),
        "ctc+ps-wer": rank_sum_pick(ctc, errors),
        "ctc+ps-gop": rank_sum_pick(ctc, gop),
        "oracle": oracle_pick(candidates),
    }


def run(argv=None, judge=None) -> tuple[str, list[dict]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("probe", help="the folder candidate_ranking_probe.py --save-candidates wrote")
    args = p.parse_args(argv)
    folder = Path(args.probe)
    data = json.loads((folder / "candidates.json").read_text())
    if not (folder / "candidates").is_dir():
        raise SystemExit(f"{folder}/candidates is missing: run candidate_ranking_probe.py with --save-candidates")
    judge = judge or PocketsphinxJudge()
    records, start = data["cases"], time.perf_counter()
    for index, record in enumerate(records, 1):
        for cand in record["candidates"]:
            wave, rate = read_audio(folder / "candidates" / f"{record['id']}_{cand['seed']}.wav")
            cand.update(judge.score(wave, rate, record["target_text"]))
        print(f"[{index}/{len(records)}] {record['id']} ({time.perf_counter() - start:.0f} s)", flush=True)
    table = selection_table(records, picks)
    seconds = sum(c["seconds"] for r in records for c in r["candidates"])
    wall = time.perf_counter() - start
    text = (
        f"# pocketsphinx as a judge of best of {len(records[0]['candidates'])}, {len(records)} cases\n\n"
        f"`python {' '.join(sys.argv)}` on `{data['meta']['command']}`\n\n{table}\n"
        f"pocketsphinx took {wall:.0f} s for {seconds:.0f} s of candidates (three passes each): RTF "
        f"{wall / seconds:.3f}.\n"
    )
    (folder / "pocketsphinx_judges.json").write_text(json.dumps(records, indent=1))
    (folder / "pocketsphinx_judges.md").write_text(text)
    print(text)
    return table, records


def main(argv=None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
