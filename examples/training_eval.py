"""Evaluation helpers used during training: text-use diagnostic, validation sample, loss plot."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from modeling_ditar.training_data import collate_examples


@torch.no_grad()
def x0_error_at_t1(model, batch) -> float:
    """Teacher-forced x0 MSE at t = 1, where LocDiT only has h and the history to go on. Comparing it with the right
    and with a wrong transcript measures how much the model uses the text (proto.md section 5)."""
    output = model(**batch)
    hidden = output.speech_hidden_states[:, :-1]  # [B, N, H]: the outputs that predict patch 1..N
    patches, patch_mask = model.patchify(batch["speech_features"].to(model.dtype), batch["speech_attention_mask"])
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
    pairs = [(i, -1) for i in range(len(utterances))]
    batch = collate_examples(pairs, utterances, pad_id)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    right = x0_error_at_t1(model, batch)
    shifted = dict(batch)
    shifted["input_ids"] = batch["input_ids"].roll(1, dims=0)
    shifted["attention_mask"] = batch["attention_mask"].roll(1, dims=0)
    wrong = x0_error_at_t1(model, shifted)
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
    for key in ("loss", "diffusion_loss", "stop_loss"):
        ax.plot(steps, [float(r[key]) for r in rows], label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
