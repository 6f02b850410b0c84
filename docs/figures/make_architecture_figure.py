#!/usr/bin/env python
"""Draw docs/figures/architecture.png: how DiTAR turns text and a voice prompt into a waveform.

python docs/figures/make_architecture_figure.py            # needs matplotlib (the `train` extra)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

INPUT, PROCESS, MODEL, OUTPUT = "#e8f1fb", "#f4f4f4", "#fff2d9", "#e6f5e6"


def box(ax, x, y, w, h, title, body="", color=PROCESS):
    ax.add_patch(
        FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12", fc=color, ec="#444", lw=1.2)
    )
    ax.text(x + w / 2, y + h - 0.22, title, ha="center", va="top", fontsize=11, fontweight="bold")
    if body:
        ax.text(x + w / 2, y + h - 0.58, body, ha="center", va="top", fontsize=8.6, linespacing=1.35)


def arrow(ax, a, b, text="", rad=0.0, offset=(0.0, 0.12)):
    ax.add_patch(
        FancyArrowPatch(
            a, b, arrowstyle="-|>", mutation_scale=14, lw=1.3, color="#333", connectionstyle=f"arc3,rad={rad}"
        )
    )
    if text:
        ax.text(
            (a[0] + b[0]) / 2 + offset[0],
            (a[1] + b[1]) / 2 + offset[1],
            text,
            ha="center",
            va="bottom",
            fontsize=8,
            color="#333",
            style="italic",
        )


def draw(out: Path) -> None:
    fig, ax = plt.subplots(figsize=(13, 6.6), dpi=150)
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 6.6)
    ax.axis("off")

    box(ax, 0.2, 4.6, 2.4, 1.5, "Text", '"Hello there."\n→ normalised, phonemised\n(espeak-ng IPA tokens)', INPUT)
    box(ax, 0.2, 2.4, 2.4, 1.7, "Voice prompt", "3–10 s of speech\n+ its transcript\n(or the default voice)", INPUT)
    box(
        ax,
        3.1,
        2.4,
        2.5,
        3.7,
        "Processor",
        "tokenizer: text and\nprompt transcript → ids\n\nfeature extractor:\n"
        "prompt audio → 16 kHz\n80-bin log-mel frames\n(50 per second),\nnormalised, cut into\npatches of P = 4 frames",
        PROCESS,
    )
    box(
        ax,
        6.1,
        4.3,
        3.0,
        1.8,
        "Causal LM backbone",
        "a transformers causal LM\n(Qwen2-style) reads\n[text tokens | speech patches]\none step per patch (12.5 Hz)",
        MODEL,
    )
    box(
        ax,
        6.1,
        2.1,
        3.0,
        1.7,
        "Aggregation encoder",
        "bidirectional transformer:\neach patch of 4 frames\n→ one embedding",
        MODEL,
    )
    box(
        ax,
        9.6,
        4.3,
        3.2,
        1.8,
        "LocDiT sampler",
        "small diffusion transformer\n(diffusers blocks + scheduler):\n"
        "ODE steps with LM guidance\nand temperature → next patch",
        MODEL,
    )
    box(
        ax,
        9.6,
        2.1,
        3.2,
        1.7,
        "Stop head",
        "after each patch: has the\ntext been said? stop, or\nfeed the patch back",
        MODEL,
    )
    box(
        ax,
        9.6,
        0.2,
        3.2,
        1.4,
        "Vocoder → waveform",
        "log-mel → audio (Griffin-Lim,\nor a VAE decoder); chunks\nwhile streaming",
        OUTPUT,
    )

    arrow(ax, (2.6, 5.35), (3.1, 5.35))
    arrow(ax, (2.6, 3.25), (3.1, 3.25))
    arrow(ax, (5.6, 5.3), (6.1, 5.3), "ids")
    arrow(ax, (5.6, 2.95), (6.1, 2.95), "patches")
    arrow(ax, (7.6, 3.8), (7.6, 4.3), "patch embeddings", offset=(0.75, -0.1))
    arrow(ax, (9.1, 5.2), (9.6, 5.2), "hidden", offset=(0.0, 0.1))
    arrow(ax, (11.2, 4.3), (11.2, 3.8), "patch", offset=(0.3, -0.1))
    arrow(ax, (9.6, 2.6), (9.1, 2.6), "generated patch\n(autoregressive loop)", offset=(-0.05, -0.75))
    arrow(ax, (11.2, 2.1), (11.2, 1.6), "all patches", offset=(0.55, -0.1))

    ax.text(
        0.2,
        1.3,
        "Zero-shot cloning: the prompt's transcript, the text and the prompt's patches form one prefix;\n"
        "the model continues it in the prompt's voice, a patch of 4 frames (80 ms) at a time.\n"
        "Best of K: K candidates per text, the one the model's CTC head reads as the text most closely is kept.",
        fontsize=9,
        va="top",
        linespacing=1.5,
    )
    ax.set_title("DiTAR: text + voice prompt → speech", fontsize=14, fontweight="bold", loc="left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "architecture.png")
    args = parser.parse_args(argv)
    draw(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
