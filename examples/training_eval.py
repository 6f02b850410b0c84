"""Evaluation helpers used during training: text-use diagnostics, validation sample, loss plot.

The text-use gaps of a saved model, on validation utterances of a corpus picked as train.py picks them:

    python examples/training_eval.py --model modeling_ditar/default --dataset data/corpus
"""

from __future__ import annotations

import csv
import sys
from dataclasses import replace
from pathlib import Path

import torch

from modeling_ditar.training_data import collate_examples


def spread_rows(num_rows: int, count: int) -> list[int]:
    """`count` row indices spread evenly over `num_rows` rows (all of them when there are fewer): the validation split
    is stored voice by voice, so its first rows would all be one voice."""
    if count >= num_rows:
        return list(range(num_rows))
    return sorted({round(i * (num_rows - 1) / max(count - 1, 1)) for i in range(count)})


@torch.no_grad()
def x0_error_at_t1(model, batch, select: torch.Tensor | None = None) -> float:
    """Teacher-forced x0 MSE at t = 1, where LocDiT only has h and the history to go on. Comparing it with the right
    and with a wrong transcript measures how much the model uses the text (proto.md section 5). `select` [B, N]: score
    only these patches (e.g. the target part of prompt + target rows)."""
    output = model(**batch)
    hidden = output.speech_hidden_states[:, :-1]  # [B, N, H]: the outputs that predict patch 1..N
    patches, patch_mask = model.patchify(batch["speech_features"].to(model.dtype), batch["speech_attention_mask"])
    if select is not None:
        patch_mask = patch_mask & select.to(patch_mask.device)
    history = history_mask = None
    if model.config.num_history_patches > 0:
        windows, window_mask = model._history_windows(patches, model.config.num_history_patches)
        history = windows[patch_mask].flatten(1, 2)
        history_mask = window_mask[patch_mask].repeat_interleave(model.config.patch_size, dim=1)
    x0 = patches[patch_mask].float()
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    t = torch.ones(x0.shape[0], device=x0.device)
    v = model.locdit(noise.to(model.dtype), t, hidden[patch_mask], history, history_mask).float()
    return float(((-v - x0) ** 2).mean())  # at t = 1: x0_hat = cos(pi/2) x - sin(pi/2) v = -v


def text_use_gap(model, utterances, pad_id: int) -> dict:
    """Single utterances, every transcript swapped for another row's: how much the text is used where no speech
    precedes."""
    pairs = [(i, -1) for i in range(len(utterances))]
    batch = collate_examples(pairs, utterances, pad_id)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    right = x0_error_at_t1(model, batch)
    shifted = dict(batch)
    shifted["input_ids"] = batch["input_ids"].roll(1, dims=0)
    shifted["attention_mask"] = batch["attention_mask"].roll(1, dims=0)
    del shifted["speech_position_rate"]  # "aligned" positions: the rate of the wrong transcript over these frames
    wrong = x0_error_at_t1(model, shifted)
    return {"right": right, "wrong": wrong, "penalty": wrong / right - 1}


def continuation_text_use_gap(model, utterances, pad_id: int, space_ids=()) -> dict:
    """Prompt + target rows, as generation runs: each utterance is the target, prompted by the next utterance of the
    same speaker (or the next one); the wrong transcript replaces only the target's text (by another row's) and only
    the target's patches are scored. docs/research/diagnostics/teacher_forcing.md found the text used far less here
    than where no speech precedes."""
    count = len(utterances)
    if count < 2:
        raise ValueError("continuation_text_use_gap needs at least 2 utterances.")
    partners = []
    for i, utterance in enumerate(utterances):
        same = [j for j in range(i + 1, i + count) if utterances[j % count].speaker == utterance.speaker]
        partners.append(same[0] % count if same else (i + 1) % count)
    pairs = [(i, partner) for i, partner in enumerate(partners)]
    patch = model.config.patch_size
    right_batch = collate_examples(pairs, utterances, pad_id, space_ids)
    # the prompt occupies the first frames of each row; its patches (and one straddling the boundary) are not scored
    starts = torch.tensor([-(-utterances[p].features.shape[0] // patch) for p in partners])
    num_patches = right_batch["speech_features"].shape[1] // patch
    select = torch.arange(num_patches)[None] >= starts[:, None]
    # wrong: each target's transcript is another row's target transcript (a different sentence where possible)
    donors = [
        next(
            (d % count for d in range(i + 1, i + count) if utterances[d % count].token_ids != utterances[i].token_ids),
            (i + 1) % count,
        )
        for i in range(count)
    ]
    # rows count + i: utterance i's features under the donor's transcript, still prompted by its partner
    swapped = [replace(u, token_ids=utterances[donors[i]].token_ids) for i, u in enumerate(utterances)]
    wrong_batch = collate_examples(
        [(count + i, partner) for i, partner in pairs], utterances + swapped, pad_id, space_ids
    )
    right_batch = {k: v.to(model.device) for k, v in right_batch.items()}
    wrong_batch = {k: v.to(model.device) for k, v in wrong_batch.items()}
    right = x0_error_at_t1(model, right_batch, select)
    wrong = x0_error_at_t1(model, wrong_batch, select)
    return {"right": right, "wrong": wrong, "penalty": wrong / right - 1}


def write_validation_sample(model, processor, utterances, space_ids, out_dir: Path):
    """Prompt = validation utterance 0 (its audio and text); target text = utterance 1 of the same set."""
    import soundfile as sf

    out_dir.mkdir(parents=True, exist_ok=True)
    prompt, target = utterances[0], utterances[1 % len(utterances)]
    ids = torch.tensor([prompt.token_ids + list(space_ids) + target.token_ids], device=model.device)
    generated = model.generate(
        ids,
        prompt_features=prompt.features[None].float().to(model.device),
        generator=torch.Generator().manual_seed(0),
        speech_position_rate=len(prompt.token_ids) / prompt.features.shape[0],  # the prompt's, as the processor's
    )
    length = int(generated.lengths[0])
    features = model.denormalize_features(generated.features[0, :length].float().cpu())
    vocoder = processor.build_vocoder()
    if length > 0:
        audio = vocoder(features[None])[0].numpy()
        sf.write(out_dir / "sample.wav", audio, vocoder.sampling_rate)
    write_mel_png(features, out_dir / "mel.png", title=f"stopped={bool(generated.stopped[0])} frames={length}")


def write_mel_png(features: torch.Tensor, path: Path, title: str = ""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.imshow(features.T.numpy(), origin="lower", aspect="auto")
    ax.set_title(title)
    ax.set_xlabel("frame")
    ax.set_ylabel("mel bin")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_loss_plot(csv_path: Path, png_path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("loss", "diffusion_loss", "stop_loss", "ctc_loss", "guided_attention_loss"):
        if key in rows[0]:  # the auxiliary losses only where the run has them
            ax.plot(steps, [float(r[key]) for r in rows], label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


def main(argv=None):
    import argparse

    from datasets import load_from_disk

    from modeling_ditar import DiTARFeatureExtractor, DiTARForConditionalGeneration, DiTARProcessor
    from modeling_ditar.training_data import check_corpus_features

    parser = argparse.ArgumentParser(description="Right-vs-wrong-transcript x0 error of a saved DiTAR model.")
    parser.add_argument("--model", required=True, help="a pipeline folder (model/, processor/) or a train.py final/")
    parser.add_argument("--dataset", required=True, help="a corpus written by build_corpus.py --features")
    parser.add_argument(
        "--num-utterances",
        type=int,
        default=64,
        help="validation utterances, spread over the split as train.py picks them (its eval_utterances)",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train import REBUILD_CORPUS, load_utterances

    folder = Path(args.model)
    model = DiTARForConditionalGeneration.from_pretrained(str(folder / "model"), dtype=torch.float32).eval()
    processor = DiTARProcessor.from_pretrained(str(folder / "processor"))
    settings = DiTARFeatureExtractor.get_feature_extractor_dict(str(Path(args.dataset) / "feature_extractor"))[0]
    check_corpus_features(settings, processor.feature_extractor, args.dataset, args.model, REBUILD_CORPUS)
    split = load_from_disk(args.dataset)["validation"]
    rows = spread_rows(len(split), args.num_utterances)
    valid = load_utterances(split.select(rows), processor, model, 1, "validation", rows)
    pad_id = processor.tokenizer.pad_token_id or 0
    single = text_use_gap(model, valid, pad_id)
    continued = continuation_text_use_gap(model, valid, pad_id, processor.encode_text(" ", allow_empty=True))
    for name, gap in (("single utterances", single), ("prompt + target", continued)):
        print(
            f"{name}: x0-MSE at t=1 right text {gap['right']:.4f} wrong text {gap['wrong']:.4f} "
            f"({100 * gap['penalty']:+.1f}%)"
        )
    return single, continued


if __name__ == "__main__":
    main()
