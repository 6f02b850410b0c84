"""Teacher-forced sampling: every target patch is sampled by LocDiT from the backbone output over the *ground-truth*
prefix (prompt + the real target patches before it) and the real history patches, instead of from the model's own
earlier patches.

Compared with free-running generation (the `model` row) it separates two causes of unintelligible output:
* teacher-forced speech is intelligible, generated speech is not -> the per-patch model is good enough and the loop
  drifts on its own outputs (exposure bias, stop/length errors);
* teacher-forced speech is unintelligible too -> the per-patch prediction itself (text use, LocDiT quality) limits.
The ground truth also fixes the length, so the row never "fails to stop".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from modeling_ditar.sampling import GuidedVelocity, PatchSampler


@dataclass
class TeacherForcedPrefix:
    """What the backbone gives every target patch of one row, from the real prefix; the same for any sampler setting.

    cond [Nt, H]: the backbone outputs that predict the Nt target patches; history [Nt, K*P, D] and history_mask
    [Nt, K*P] (None without history): the real patches before each; hidden [1+N, H]: all backbone outputs of the row
    (start-of-speech, then one per prompt and target patch)."""

    cond: torch.Tensor
    history: torch.Tensor | None
    history_mask: torch.Tensor | None
    hidden: torch.Tensor

    @property
    def num_patches(self) -> int:
        return self.cond.shape[0]


@torch.no_grad()
def teacher_forced_prefix(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_frames: torch.Tensor,
    target_frames: torch.Tensor,
    speech_position_rate=None,
) -> TeacherForcedPrefix:
    """One backbone pass over text + real prompt + real target patches.

    input_ids / attention_mask [1, L]: prompt transcript + target text as the processor encodes them; prompt_frames
    [Tp, D] and target_frames [Tt, D]: normalised real frames. Frames that do not fill a whole patch are dropped, as
    generation drops them from the prompt. speech_position_rate: the processor's (the prompt's speaking rate), which
    models with "aligned" speech positions use as generation does."""
    config = model.config
    patch, num_history = config.patch_size, config.num_history_patches
    device, dtype = model.device, model.dtype
    num_prompt = prompt_frames.shape[0] // patch
    num_target = target_frames.shape[0] // patch
    if num_target == 0:
        raise ValueError(f"the target is shorter than one patch ({patch} frames); give a longer target_audio.")
    frames = torch.cat([prompt_frames[: num_prompt * patch], target_frames[: num_target * patch]])
    frames = frames[None].to(device=device, dtype=dtype)  # [1, T, D]

    out = model(
        input_ids=input_ids.to(device),
        speech_features=frames,
        attention_mask=attention_mask.to(device),
        speech_position_rate=speech_position_rate,
        return_dict=True,
    )
    hidden = out.speech_hidden_states[0]  # [1+N, H]; row i is the backbone output that predicts patch i
    targets = torch.arange(num_prompt, num_prompt + num_target, device=device)
    history = history_mask = None
    if num_history > 0:
        patches = frames.reshape(1, -1, patch, frames.shape[-1])  # [1, N, P, D]
        windows, window_mask = model._history_windows(patches, num_history)  # [1, N, K, P, D], [1, N, K]
        history = windows[0, targets].flatten(1, 2)  # [Nt, K*P, D]
        history_mask = window_mask[0, targets].repeat_interleave(patch, dim=1)  # [Nt, K*P]
    return TeacherForcedPrefix(hidden[targets], history, history_mask, hidden)


@torch.no_grad()
def sample_teacher_forced(
    model,
    scheduler,
    prefix: TeacherForcedPrefix,
    num_inference_steps: int,
    guidance_scale: float,
    temperature: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Normalised patches [Nt, P, D]: LocDiT solves every target patch from its prefix, with generation's sampler."""
    config = model.config
    velocity = GuidedVelocity(model.locdit, prefix.cond, prefix.history, prefix.history_mask, guidance_scale)
    sampler = PatchSampler(scheduler, use_scheduler_step=not model.generation_speedups.inline_euler)
    return sampler.sample(
        velocity,
        (prefix.num_patches, config.patch_size, config.feature_dim),
        num_inference_steps,
        temperature,
        generator=generator,
        device=model.device,
        dtype=model.dtype,
    )


def teacher_forced_patches(
    model,
    scheduler,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_frames: torch.Tensor,
    target_frames: torch.Tensor,
    num_inference_steps: int,
    guidance_scale: float,
    temperature: float,
    generator: torch.Generator | None = None,
    speech_position_rate=None,
) -> torch.Tensor:
    """Normalised patches [Nt, P, D] for the Nt = len(target_frames) // P target patches of one row: patch j is sampled
    from the backbone output over the text and the real patches before it, with the K real patches before it as
    history, using the settings of generation (`teacher_forced_prefix`, then `sample_teacher_forced`)."""
    prefix = teacher_forced_prefix(model, input_ids, attention_mask, prompt_frames, target_frames, speech_position_rate)
    return sample_teacher_forced(model, scheduler, prefix, num_inference_steps, guidance_scale, temperature, generator)


def real_frames(pipe, audio, rate: int) -> torch.Tensor:
    """Normalised frames [T, D] of a recording, exactly as the processor computes them for a prompt."""
    processor = pipe.processor
    wave = processor.load_prompt_audio(audio, rate)
    return processor.feature_extractor([wave.numpy()], sampling_rate=processor.sampling_rate, return_tensors="pt")[
        "input_features"
    ][0]


def teacher_forced_features(
    pipe,
    target_audio: np.ndarray,
    target_rate: int,
    text: str,
    prompt_audio,
    prompt_text: str,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    temperature: float | None = None,
    generator: torch.Generator | None = None,
    prompt_sampling_rate: int | None = None,
) -> torch.Tensor:
    """De-normalised features [Nt*P, D] of a case's target utterance, every patch sampled from the real prefix, with the
    pipeline's defaults for the settings left out. `prompt_sampling_rate`: the rate of an array `prompt_audio` (a path
    needs none)."""
    if pipe.vae is not None:
        raise ValueError("teacher forcing is implemented for log-mel pipelines; this pipeline uses a VAE.")
    model = pipe.model
    config = model.generation_config  # the sampling defaults live in the generation config
    inputs = pipe.encode_inputs([text], prompt_audio, prompt_text, prompt_sampling_rate)  # ids + normalised prompt
    prompt_frames = inputs["prompt_features"][0, : int(inputs["prompt_attention_mask"][0].sum())]
    target_frames = real_frames(pipe, target_audio, target_rate)
    patches = teacher_forced_patches(
        model,
        pipe.scheduler,
        inputs["input_ids"],
        inputs["attention_mask"],
        prompt_frames,
        target_frames,
        config.num_inference_steps if num_inference_steps is None else num_inference_steps,
        config.guidance_scale if guidance_scale is None else guidance_scale,
        config.temperature if temperature is None else temperature,
        generator,
        speech_position_rate=inputs.get("speech_position_rate"),
    )
    return model.denormalize_features(patches.flatten(0, 1).float()).cpu()
