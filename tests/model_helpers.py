"""Tiny DiTAR configs, inputs and model tweaks shared by the test files.

Shaped like transformers' `ModelTester` classes: one plain object holds the tiny sizes, `get_config()` builds the config
and `prepare_inputs()` / `prepare_generation_inputs()` build batches whose rows differ in text and speech length.
"""

from __future__ import annotations

import torch

from modeling_ditar import DiTARConfig, DiTARForConditionalGeneration

TEXT_CONFIGS = {
    "qwen2": {
        "model_type": "qwen2",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 64,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
    },
    "llama": {
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 64,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
    },
}


class DiTARModelTester:
    """Tiny sizes for every DiTAR test (hidden 32, 1-2 layers, 4 heads, vocab 64, D=8, P=2)."""

    def __init__(
        self,
        backbone: str = "qwen2",
        batch_size: int = 2,
        text_lengths: tuple[int, ...] = (7, 4),
        frame_lengths: tuple[int, ...] = (12, 7),
        prompt_frame_lengths: tuple[int, ...] = (6, 3),
        feature_dim: int = 8,
        patch_size: int = 2,
        num_history_patches: int = 2,
        **config_overrides,
    ):
        self.backbone = backbone
        self.batch_size = batch_size
        self.text_lengths = text_lengths
        self.frame_lengths = frame_lengths
        self.prompt_frame_lengths = prompt_frame_lengths
        self.feature_dim = feature_dim
        self.patch_size = patch_size
        self.num_history_patches = num_history_patches
        self.config_overrides = config_overrides

    def get_config(self, **overrides) -> DiTARConfig:
        kwargs = {
            "text_config": dict(TEXT_CONFIGS[self.backbone]),
            "feature_dim": self.feature_dim,
            "patch_size": self.patch_size,
            "num_history_patches": self.num_history_patches,
            "encoder_hidden_size": 32,
            "encoder_num_layers": 1,
            "encoder_num_heads": 4,
            "encoder_intermediate_size": 64,
            "locdit_hidden_size": 32,
            "locdit_num_layers": 2,
            "locdit_num_heads": 4,
            "locdit_intermediate_size": 64,
            "cfg_dropout_prob": 0.1,
            "max_patches_per_text_token": 1.0,
            "min_max_new_patches": 2,
            "num_inference_steps": 4,
            "guidance_scale": 2.0,
            "temperature": 0.5,
        }
        kwargs.update(self.config_overrides)
        kwargs.update(overrides)
        return DiTARConfig(**kwargs)

    def get_model(self, seed: int = 0, randomize_locdit_output: bool = True, **overrides):
        torch.manual_seed(seed)
        model = DiTARForConditionalGeneration(self.get_config(**overrides))
        if randomize_locdit_output:
            randomize_output_projection(model, seed=seed + 1)
        return model.eval()

    def _text(self, lengths, generator, left_pad=False):
        batch, width = len(lengths), max(lengths)
        vocab = TEXT_CONFIGS[self.backbone]["vocab_size"]
        input_ids = torch.randint(1, vocab, (batch, width), generator=generator)
        attention_mask = torch.zeros(batch, width, dtype=torch.long)
        for row, length in enumerate(lengths):
            if left_pad:
                attention_mask[row, width - length :] = 1
            else:
                attention_mask[row, :length] = 1
        input_ids = input_ids.masked_fill(attention_mask == 0, 0)
        return input_ids, attention_mask

    def _frames(self, lengths, generator, num_frames=None):
        batch = len(lengths)
        num_frames = max(lengths) if num_frames is None else num_frames
        features = torch.randn(batch, num_frames, self.feature_dim, generator=generator)
        mask = torch.zeros(batch, num_frames, dtype=torch.long)
        for row, length in enumerate(lengths):
            mask[row, :length] = 1
        return features * mask[..., None], mask

    def prepare_inputs(self, seed: int = 0) -> dict[str, torch.Tensor]:
        """Right-padded training batch; rows differ in text length and number of real frames."""
        generator = torch.Generator().manual_seed(seed)
        input_ids, attention_mask = self._text(self.text_lengths[: self.batch_size], generator)
        features, speech_mask = self._frames(self.frame_lengths[: self.batch_size], generator)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "speech_features": features,
            "speech_attention_mask": speech_mask,
        }

    def prepare_generation_inputs(self, seed: int = 0, left_pad: bool = False) -> dict[str, torch.Tensor]:
        """Padded generation batch; rows differ in text length and prompt length (frames beyond a whole patch)."""
        generator = torch.Generator().manual_seed(seed)
        input_ids, attention_mask = self._text(self.text_lengths[: self.batch_size], generator, left_pad=left_pad)
        prompt, prompt_mask = self._frames(self.prompt_frame_lengths[: self.batch_size], generator)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "prompt_features": prompt,
            "prompt_attention_mask": prompt_mask,
        }


def select_row(inputs: dict[str, torch.Tensor], row: int, left_pad: bool = False) -> dict[str, torch.Tensor]:
    """The inputs of one row alone, with its padding removed (the batch-of-one reference)."""
    out = {}
    text_mask = inputs["attention_mask"][row].bool()
    out["input_ids"] = inputs["input_ids"][row][text_mask][None]
    out["attention_mask"] = torch.ones_like(out["input_ids"])
    for features_key, mask_key in (
        ("speech_features", "speech_attention_mask"),
        ("prompt_features", "prompt_attention_mask"),
    ):
        if features_key in inputs:
            length = int(inputs[mask_key][row].sum())
            out[features_key] = inputs[features_key][row, :length][None]
            out[mask_key] = torch.ones(1, length, dtype=torch.long)
    return out


def randomize_output_projection(model: DiTARForConditionalGeneration, seed: int = 1, std: float = 0.2) -> None:
    """LocDiT's output projection is zero-initialised (velocity 0 for an untrained model); give it small random values
    so that LocDiT outputs, and every gradient upstream of it, are non-trivial."""
    generator = torch.Generator().manual_seed(seed)
    out_proj = model.locdit.out_proj
    with torch.no_grad():
        out_proj.weight.copy_(torch.randn(out_proj.weight.shape, generator=generator) * std)
        out_proj.bias.copy_(torch.randn(out_proj.bias.shape, generator=generator) * std)


def set_stop_logit(model: DiTARForConditionalGeneration, logit: float) -> None:
    """Make the stop head output a constant logit (large positive: stop after one patch; large negative: never stop)."""
    with torch.no_grad():
        model.stop_head.weight.zero_()
        model.stop_head.bias.fill_(logit)


class ScriptedStopHead(torch.nn.Module):
    """Stand-in stop head: row r says "stop" at its `stop_after[r]`-th call (1-based), never if None."""

    def __init__(self, stop_after: list[int | None]):
        super().__init__()
        self.stop_after = stop_after
        self.calls = 0

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        logits = torch.full((hidden.shape[0], 1), -30.0, dtype=hidden.dtype, device=hidden.device)
        for row, after in enumerate(self.stop_after):
            if after is not None and self.calls >= after:
                logits[row] = 30.0
        return logits


def generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def seeded(fn, seed: int = 0):
    """fn() after torch.manual_seed(seed): the training loss samples noise, times and dropout."""
    torch.manual_seed(seed)
    return fn()


def reference_velocity(locdit, cond, history, history_mask, guidance):
    """The guided velocity v(0) + g (v(h) - v(0)) from plain LocDiT calls, to check generation against."""

    def velocity(x, t):
        v_cond = locdit(x, t, cond, history, history_mask)
        if guidance == 1.0:
            return v_cond
        v_uncond = locdit(x, t, torch.zeros_like(cond), history, history_mask)
        return v_uncond + guidance * (v_cond - v_uncond)

    return velocity


@torch.no_grad()
def generation_reference_from_forward(
    model, input_ids, attention_mask, prompt, new_patches: int, steps: int, guidance: float, **forward_kwargs
) -> torch.Tensor:
    """What deterministic generation must produce, built from the training forward: per new patch, the LM output of
    the teacher-forced forward at the current position, the last K patches as history, the per-patch ODE solve.
    prompt [B, prompt patches * P, D]; forward_kwargs go to every forward (e.g. speech_position_rate)."""
    from modeling_ditar import PatchSampler

    config = model.config
    P, D, K = config.patch_size, config.feature_dim, config.num_history_patches
    batch, prompt_patches = prompt.shape[0], prompt.shape[1] // P
    sampler = PatchSampler()
    frames = prompt  # [B, frames so far, D]
    valid = torch.zeros(batch, K * P, dtype=torch.bool)
    valid[:, K * P - prompt_patches * P :] = True
    expected = []
    for index in range(new_patches):
        dummy = torch.zeros(batch, P, D)  # causal LM: a patch after the current position changes nothing before it
        hidden = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            speech_features=torch.cat([frames, dummy], dim=1),
            **forward_kwargs,
        ).speech_hidden_states[:, prompt_patches + index]
        history = torch.cat([torch.zeros(batch, K * P, D), frames], dim=1)[:, -K * P :]
        patch = sampler.sample(
            reference_velocity(model.locdit, hidden, history, valid, guidance), (batch, P, D), steps, 0.0
        )
        expected.append(patch)
        frames = torch.cat([frames, patch], dim=1)
        valid = torch.cat([valid[:, P:], torch.ones(batch, P, dtype=torch.bool)], dim=1)
    return torch.cat(expected, dim=1)
