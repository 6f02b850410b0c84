"""Does any backbone attention head follow the text while the speech is produced?

For each case (prompt audio + transcript, target text and the real target audio), one pass over text + real prompt +
real target patches (teacher forcing, as in teacher_forcing_probe.py). For every layer and head, at each position that
predicts a target patch, where its attention over the text lands is compared with a reference: the target text read at
a constant rate over the target speech (token (j + 0.5) / Nt of the way through the target text for patch j of Nt).
A head that aligns text and speech tracks the reference to within a few tokens; one that does not is no closer than
the constant guess (the middle of the target text). Pauses make the constant-rate reference approximate, so a few
tokens of error are expected even from a perfect aligner.

    python examples/research/attention_alignment_probe.py --cases data/eval/validation12/cases.jsonl [--pipeline DIR] \
        [--plot attention.png]

Prints per head: attention mass on the text, mean |attended text position - reference| (attention-weighted position)
and the correlation of the most-attended token with the reference, best heads first, and the constant-guess error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/
from eval_lib import load_cases, load_pipeline  # noqa: E402
from eval_lib.systems import read_audio  # noqa: E402
from eval_lib.teacher_forcing import real_frames  # noqa: E402

from modeling_ditar.guided_attention import AttentionReader, attention_rows  # noqa: E402


@torch.no_grad()
def case_attention(pipe, case) -> dict:
    """Attention [layers, heads, Np+Nt, S] of the positions predicting every prompt and target patch, with the text
    lengths (whole, prompt part) and patch counts."""
    model = pipe.model
    patch = model.config.patch_size
    text_config = model.config.text_config
    inputs = pipe.encode_inputs([case.target_text], case.prompt_audio, case.prompt_text, None)
    input_ids = inputs["input_ids"]
    text_len = int(inputs["attention_mask"][0].sum())
    prompt_text_len = len(pipe.processor.encode_text(case.prompt_text))
    prompt = inputs["prompt_features"][0, : int(inputs["prompt_attention_mask"][0].sum())]
    audio, rate = read_audio(case.target_audio)
    target = real_frames(pipe, audio, rate)
    num_prompt, num_target = prompt.shape[0] // patch, target.shape[0] // patch
    frames = torch.cat([prompt[: num_prompt * patch], target[: num_target * patch]])[None]
    heads = [
        (layer, head)
        for layer in range(text_config.num_hidden_layers)
        for head in range(text_config.num_attention_heads)
    ]
    with AttentionReader(model.language_model, heads) as reader:
        model(
            input_ids=input_ids,
            speech_features=frames.to(model.dtype),
            attention_mask=inputs["attention_mask"],
            speech_position_rate=inputs.get("speech_position_rate"),
            return_dict=True,
        )
    length = text_len + 1 + num_prompt + num_target
    rows = torch.arange(text_len, text_len + num_prompt + num_target)[None]  # position predicting patch j
    key_mask = torch.ones(1, length, dtype=torch.bool)
    attention = torch.stack(
        [attention_rows(q.float(), k.float(), rows, key_mask)[0] for q, k in reader.queries_keys().values()]
    )
    attention = attention.view(text_config.num_hidden_layers, text_config.num_attention_heads, *attention.shape[1:])
    return {
        "attention": attention.numpy(),
        "text_len": text_len,
        "prompt_text_len": prompt_text_len,
        "num_prompt": num_prompt,
        "num_target": num_target,
    }


def head_scores(item: dict) -> dict[str, np.ndarray]:
    """Per-head scores over the target patches of one case ([layers, heads] arrays) and the constant-guess error."""
    text_len, prompt_len = item["text_len"], item["prompt_text_len"]
    num_prompt, num_target = item["num_prompt"], item["num_target"]
    j = np.arange(num_target)
    reference = prompt_len + (j + 0.5) / num_target * (text_len - prompt_len)
    text = item["attention"][:, :, num_prompt:, :text_len]  # [layers, heads, Nt, L]
    mass = text.sum(-1)
    expected = (text * np.arange(text_len)).sum(-1) / np.maximum(mass, 1e-9)
    argmax = text.argmax(-1)
    corr = np.full(mass.shape[:2], np.nan)
    for layer in range(corr.shape[0]):
        for head in range(corr.shape[1]):
            if num_target > 3 and argmax[layer, head].std() > 0:
                corr[layer, head] = np.corrcoef(argmax[layer, head], reference)[0, 1]
    return {
        "text_mass": mass.mean(-1),
        "error": np.abs(expected - reference).mean(-1),
        "corr": corr,
        "constant_error": np.abs(reference - reference.mean()).mean(),
    }


def plot(items: list[dict], heads: list[tuple[int, int]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    item = items[0]
    fig, axes = plt.subplots(1, len(heads), figsize=(4 * len(heads), 3.6), squeeze=False)
    for ax, (layer, head) in zip(axes[0], heads, strict=True):
        ax.imshow(
            item["attention"][layer, head, :, : item["text_len"]],
            aspect="auto",
            origin="lower",
            interpolation="nearest",
        )
        ax.axvline(item["prompt_text_len"] - 0.5, color="w", lw=0.8)
        ax.axhline(item["num_prompt"] - 0.5, color="w", lw=0.8)
        ax.set_title(f"layer {layer} head {head}")
        ax.set_xlabel("text token (prompt | target)")
        ax.set_ylabel("speech patch predicted")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", required=True, help="cases JSONL of examples/evaluate.py (needs target_audio)")
    parser.add_argument("--pipeline", help="pipeline folder or training output folder (default: the embedded model)")
    parser.add_argument("--top", type=int, default=6, help="heads to print, best first")
    parser.add_argument("--plot", help="PNG of the best heads' attention over the text for the first case")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # model.forward draws diffusion-loss noise; only the attention is read
    pipe = load_pipeline(args.pipeline)
    pipe.model.float()
    cases = [c for c in load_cases(args.cases) if c.target_audio is not None]
    if not cases:
        raise SystemExit(f"{args.cases}: no case has target_audio; the probe needs the real target speech.")
    items = [case_attention(pipe, case) for case in cases]
    scores = [head_scores(item) for item in items]
    mean = {key: np.nanmean(np.stack([s[key] for s in scores]), 0) for key in ("text_mass", "error", "corr")}
    constant = float(np.mean([s["constant_error"] for s in scores]))
    order = np.argsort(mean["error"], axis=None)
    layers, heads = mean["error"].shape
    print(f"{len(cases)} cases, {args.pipeline or 'embedded default'}; {layers} layers x {heads} heads")
    print(f"constant guess (middle of the target text): {constant:.2f} tokens off")
    print(
        "| layer | head | text mass | mean tokens off | corr(most-attended token, reference) |\n|---|---|---|---|---|"
    )
    for flat in order[: args.top]:
        layer, head = divmod(int(flat), heads)
        print(
            f"| {layer} | {head} | {mean['text_mass'][layer, head]:.2f} | {mean['error'][layer, head]:.2f} | "
            f"{mean['corr'][layer, head]:.2f} |"
        )
    best = float(mean["error"].min())
    print(f"best head: {best:.2f} tokens off ({best / constant:.0%} of the constant guess's error)")
    if args.plot:
        chosen = [divmod(int(flat), heads) for flat in order[:4]]
        plot(items, chosen, args.plot)
        print(f"wrote {args.plot}")
    return mean, constant


if __name__ == "__main__":
    main()
