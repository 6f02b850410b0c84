"""How much do the default's words suffer from the speaking-rate estimate? (aligned speech positions only)

With `speech_positions: aligned` the speech after j patches sits at position j * patch_size * r, where r, the text
tokens per frame, is estimated from the prompt. A target read faster or slower than its prompt drifts away from its
text as j grows. This runs examples/evaluate.py's model row with r taken from the *target* audio instead (an oracle:
the processor's own rate of the target utterance with its transcript, which generation cannot know) and prints the
target/prompt rate ratios. Compare with the plain evaluation of the same cases, settings and seed, e.g.:

    python examples/research/rate_oracle_probe.py --cases data/eval/newvoices48/cases.jsonl --guidance-scale 1.5 \
        --threads 2 --out outputs/eval/rate-oracle-newvoices48
    python examples/compare_results.py "prompt rate=outputs/eval/sweep-newvoices48/default-903a8ea4-g1.5-t0.5-s10" \
        "target rate (oracle)=outputs/eval/rate-oracle-newvoices48"

Every other argument goes to examples/evaluate.py (rows: model only); the cases need target audio. Each target text
must be unique among the cases (the oracle is looked up by it).
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path

import torch

EXAMPLES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLES))


def run(argv: list[str], asr=None, speaker_encoder=None) -> tuple[dict, list[float]]:
    """examples/evaluate.py's model row with the oracle rate; returns its results and the target/prompt rate ratios."""
    from eval_lib.cases import load_cases

    from modeling_ditar import DiTARPipeline

    spec = importlib.util.spec_from_file_location("ditar_evaluate_cli", EXAMPLES / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    args = evaluate.build_parser().parse_args(argv)
    listed = load_cases(args.cases)
    cases = {case.target_text: case for case in listed}
    if len(cases) != len(listed):
        raise SystemExit(f"{args.cases}: two cases share a target text; the oracle rate is looked up by it")
    if any(case.target_audio is None for case in listed):
        raise SystemExit(f"{args.cases}: every case needs target audio for the oracle rate")

    oracle: dict[str, float] = {}
    ratios: list[float] = []
    original = DiTARPipeline.encode_inputs

    def encode_with_target_rate(self, texts, prompt_audio, prompt_text, sampling_rate=None):
        inputs = original(self, texts, prompt_audio, prompt_text, sampling_rate)
        if "speech_position_rate" not in inputs:
            raise SystemExit("this pipeline's model does not use aligned speech positions: nothing to probe")
        if texts[0] not in oracle:  # the processor's rate of the target utterance, read as if it were a prompt
            case = cases[texts[0]]
            target = original(self, texts, case.target_audio, case.target_text, None)
            oracle[texts[0]] = float(target["speech_position_rate"][0])
            ratios.append(oracle[texts[0]] / float(inputs["speech_position_rate"][0]))
        inputs["speech_position_rate"] = torch.full_like(inputs["speech_position_rate"], oracle[texts[0]])
        return inputs

    DiTARPipeline.encode_inputs = encode_with_target_rate
    try:
        results = evaluate.main(
            [*argv, "--rows", "model", *([] if "--label" in argv else ["--label", "target rate (oracle)"])],
            asr=asr,
            speaker_encoder=speaker_encoder,
        )
    finally:
        DiTARPipeline.encode_inputs = original
    return results, ratios


def main(argv: list[str]) -> None:
    _, ratios = run(argv)
    print(
        f"target/prompt rate over {len(ratios)} cases: median {statistics.median(ratios):.3f}, "
        f"sd {statistics.stdev(ratios):.3f}, range {min(ratios):.2f}-{max(ratios):.2f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
