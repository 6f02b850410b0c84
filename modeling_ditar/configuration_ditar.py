"""Configuration of DiTAR (Diffusion Transformer Autoregressive modeling for speech generation)."""

import math

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .generation_ditar import GENERATION_DEFAULTS, check_generation_settings

# keys that configs written before generation configs existed may still carry (see `DiTARConfig.__post_init__`)
LEGACY_GENERATION_KEYS = tuple(key for key in GENERATION_DEFAULTS if key != "max_new_patches")

# A small Qwen2 backbone is the default so that `DiTARConfig()` builds a model that fits on a laptop.
_DEFAULT_TEXT_CONFIG = {
    "hidden_size": 256,
    "intermediate_size": 1024,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "vocab_size": 256,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}


@strict
class DiTARConfig(PreTrainedConfig):
    r"""
    Configuration of [`DiTARForConditionalGeneration`].

    DiTAR cuts continuous speech features into patches of `patch_size` frames. An aggregation encoder turns each patch
    into one embedding, a causal language model (any `transformers` causal LM, given as `text_config`) reads the text
    tokens followed by the patch embeddings, and LocDiT, a small bidirectional diffusion transformer, generates the next
    patch from the LM output and the last `num_history_patches` clean patches.

    Args:
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the causal LM backbone (`qwen2`, `llama`, ...). Its input embeddings embed the text tokens.
        feature_dim (`int`, defaults to 100): dimension D of one speech frame (mel bins or VAE latent channels).
        patch_size (`int`, defaults to 4): frames per patch P (the paper uses 4).
        num_history_patches (`int`, defaults to 2): clean patches LocDiT sees before the noisy one (paper: 1-2).
        feature_mean / feature_std (`list[float]`, *optional*): per-channel statistics used to normalise features.
            The model itself works on normalised features; the processor and pipeline (de)normalise with these.
        encoder_*: width, depth, heads and FFN width of the aggregation encoder.
        locdit_*: width, depth, heads and FFN width of LocDiT.
        candidate_locdit (`bool`, defaults to False): the model also holds `candidate_locdit`, a second LocDiT of the
            same shape that samples the patches while a text's candidates compete (generation with several candidates,
            until `candidate_prune_after_patches`), with the generation config's `candidate_num_inference_steps`.
            Typically a one- or two-step student distilled from `locdit`: the candidate phase is the part of a call
            that streaming waits for, so a cheaper sampler there brings the first audio forward, and the chosen
            candidate goes on with the full sampler. Not in the paper; trained only by distillation (fine-tuning
            changes the backbone it was distilled against, so training scripts drop it).
        cfg_dropout_prob (`float`, defaults to 0.1): probability of replacing the LM output by zeros during training
            (LM guidance, paper section 3.3).
        history_dropout_prob (`float`, defaults to 0.0): probability of hiding the history patches from LocDiT during
            training, which forces the model to rely on the LM output early in training.
        input_noise_std (`float`, defaults to 0.0): during training, Gaussian noise added to the speech patches the
            backbone reads (not to LocDiT's history or targets), with a standard deviation drawn per row uniformly from
            [0, input_noise_std] in normalised feature units. At inference the backbone reads the model's own patches,
            which differ from real speech; noisy inputs in training teach it to keep its place in the text anyway
            (conditioning augmentation, Ho et al., 2021). Not in the paper; 0 (the default) adds none.
        scheduled_sampling_prob (`float`, defaults to 0.0): during training, the largest share of the speech patches
            the backbone reads that are replaced by the model's own sample of them (each row draws its share uniformly
            from [0, scheduled_sampling_prob], then each patch is replaced with that probability). Each sample is what
            generation would have produced at that patch from the real speech before it: a first backbone pass over the
            real patches, without gradients, then LocDiT's sampler with the generation config's steps, guidance and
            temperature. LocDiT's history and targets stay the real patches. It trains the backbone on inputs like the
            ones it reads when generating, whose errors otherwise compound into lost words (parallel scheduled
            sampling, Duckworth et al., 2019). Not in the paper; it costs a training step about one backbone forward
            and a few LocDiT forwards more. 0 (the default) replaces none.
        diffusion_batch_mul (`int`, defaults to 1): during training, how many noise levels LocDiT's loss draws for
            every patch: each patch's LM output, history and target are repeated this many times with their own noise
            level and noise. The backbone runs once per step, so LocDiT learns from more samples for little extra cost
            where the backbone dominates the step (as MAR's diffusion batch multiplier of 4 does: Li et al., 2024).
            The loss stays the mean over all of them. Not in the paper; 1 (the default) draws one.
        diffusion_time_shift (`float`, defaults to 1.0): during training, where LocDiT's loss draws its noise levels.
            A uniform draw u becomes t = s u / (1 + (s - 1) u) (t = 1 is pure noise), the time shift of rectified-flow
            schedules (Esser et al., 2024): s > 1 draws more noisy patches, where the content of a patch is decided,
            s < 1 more nearly clean ones, where its detail is. A patch of several correlated frames keeps its content
            readable at more noise than one frame does, which is the case for s > 1 made for images of many pixels.
            Not in the paper; 1 (the default) draws t uniformly.
        stop_loss_weight (`float`, defaults to 1.0): weight of the stop BCE in the total loss.
        ctc_loss_weight (`float`, defaults to 0.0): weight of an optional auxiliary CTC loss that asks the backbone
            output at each patch to name the text tokens being spoken (`ctc_frames_per_patch` predictions per patch).
            Not in the paper; 0 (the default) builds no CTC head. It makes the LM align text and speech much earlier
            on small compute budgets. The head is not used at inference.
        ctc_position (`str`, defaults to "patch"): which backbone outputs the CTC head reads. "patch": the output at
            each patch, which has seen that patch (recognising what is being said); "prediction": the output that
            predicts each patch, i.e. the one before it, the condition LocDiT receives (forecasting what is said next).
        guided_attention_weight (`float`, defaults to 0.0): weight of an optional guided-attention loss (Tachibana et
            al., 2017; not in the paper) that pulls the attention of the backbone heads `guided_attention_heads`
            ([layer, head] pairs) from each speech position onto the text near the text-speech diagonal, a band of
            relative width `guided_attention_sigma`. For small budgets, where the backbone learns to read the text
            but not to follow it (modeling_ditar/guided_attention.py). Training only; 0 disables it.
        speech_positions (`str`, defaults to "sequential"): position ids the backbone's rotary embedding sees.
            "sequential" (the paper's single stream): text tokens 0..L-1, then the speech positions L, L+1, ...
            "aligned" (not in the paper): text tokens 0..L-1 and the speech position after j patches at
            j * patch_size * r, where r is the speaking rate in text tokens per feature frame, so that a speech position
            sits near the text being spoken and a head can find it by relative position alone instead of learning the
            alignment from content (modeling_ditar/speech_positions.py). r comes from the prompt (its transcript length
            over its frames; the processor returns it as `speech_position_rate`), from the training example, or
            from `text_tokens_per_frame` when there is no prompt.
        text_tokens_per_frame (`float`, defaults to 0.25): speaking rate used by "aligned" positions when no prompt
            gives one (train.py sets it to the training corpus's median).
        speech_position_jitter (`float`, defaults to 0.0): with "aligned" positions, training multiplies each row's
            rate by exp(jitter * N(0, 1)) so that the model learns to follow the text when the rate estimate is off.

    vocoder_config (`dict`, *optional*): the vocoder that [`DiTARForTextToSpeech`] holds to return waveforms, e.g.
        `{"vocoder_type": "griffin_lim", "sampling_rate": 16000, ...}` (the arguments of [`GriffinLimVocoder`]). Not
        used by [`DiTARForConditionalGeneration`], which returns features.

    Sampling settings (steps, guidance, temperature, candidates, stop threshold and length limits) live in the model's
    generation config (`generation_config.json`, a `DiTARGenerationConfig`), not here. Configs written before that still
    load: their sampling values are read aside and become the model's generation config.
    """

    model_type = "ditar"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2", init_kwargs=_DEFAULT_TEXT_CONFIG),
    }

    text_config: dict | PreTrainedConfig | None = None
    feature_dim: int = 100
    patch_size: int = 4
    num_history_patches: int = 2
    feature_mean: list[float] | None = None
    feature_std: list[float] | None = None
    encoder_hidden_size: int = 256
    encoder_num_layers: int = 2
    encoder_num_heads: int = 4
    encoder_intermediate_size: int = 1024
    locdit_hidden_size: int = 256
    locdit_num_layers: int = 4
    locdit_num_heads: int = 4
    locdit_intermediate_size: int = 1024
    candidate_locdit: bool = False
    cfg_dropout_prob: float | int = 0.1
    history_dropout_prob: float | int = 0.0
    input_noise_std: float | int = 0.0
    scheduled_sampling_prob: float | int = 0.0
    diffusion_batch_mul: int = 1
    diffusion_time_shift: float | int = 1.0
    stop_loss_weight: float | int = 1.0
    ctc_loss_weight: float | int = 0.0
    ctc_frames_per_patch: int = 2
    ctc_position: str = "patch"
    guided_attention_weight: float | int = 0.0
    guided_attention_heads: list | None = None
    guided_attention_sigma: float | int = 0.2
    speech_positions: str = "sequential"
    text_tokens_per_frame: float | int = 0.25
    speech_position_jitter: float | int = 0.0
    vocoder_config: dict | None = None
    initializer_range: float | int = 0.02
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        # Read sampling settings of older configs aside before the base class drops `temperature`; the model turns them
        # into its generation config (`DiTARGenerationConfig.from_model_config`), so they are never written back here.
        legacy = {key: kwargs.pop(key) for key in LEGACY_GENERATION_KEYS if key in kwargs}
        super().__post_init__(**kwargs)
        if legacy:
            check_generation_settings(legacy)
        self._legacy_generation_settings = legacy
        self._check_values()

    def to_dict(self) -> dict:
        output = super().to_dict()
        output.pop("_legacy_generation_settings", None)
        return output

    def _check_values(self):
        def need(condition: bool, field: str, allowed: str):
            if not condition:
                raise ValueError(f"DiTARConfig: `{field}`={getattr(self, field)!r} is invalid; {allowed}.")

        for field in (
            "feature_dim",
            "patch_size",
            "encoder_hidden_size",
            "encoder_num_layers",
            "encoder_num_heads",
            "encoder_intermediate_size",
            "locdit_hidden_size",
            "locdit_num_layers",
            "locdit_num_heads",
            "locdit_intermediate_size",
            "diffusion_batch_mul",
        ):
            need(getattr(self, field) >= 1, field, "it must be an integer >= 1")
        need(self.num_history_patches >= 0, "num_history_patches", "it must be >= 0 (0 disables history)")
        for field in ("cfg_dropout_prob", "history_dropout_prob"):
            need(0.0 <= getattr(self, field) < 1.0, field, "it must be a probability in [0, 1)")
        need(
            self.diffusion_time_shift > 0.0,
            "diffusion_time_shift",
            "it must be > 0 (1 draws noise levels uniformly, > 1 favours noisier patches)",
        )
        need(self.input_noise_std >= 0.0, "input_noise_std", "it must be >= 0 (0 adds no noise)")
        need(
            0.0 <= self.scheduled_sampling_prob <= 1.0,
            "scheduled_sampling_prob",
            "it must be a probability in [0, 1] (0 replaces no input patch)",
        )
        need(self.stop_loss_weight >= 0.0, "stop_loss_weight", "it must be >= 0")
        need(self.ctc_loss_weight >= 0.0, "ctc_loss_weight", "it must be >= 0 (0 disables the CTC head)")
        need(self.ctc_frames_per_patch >= 1, "ctc_frames_per_patch", "it must be an integer >= 1")
        need(self.ctc_position in ("patch", "prediction"), "ctc_position", "it must be 'patch' or 'prediction'")
        need(self.guided_attention_weight >= 0.0, "guided_attention_weight", "it must be >= 0 (0 disables it)")
        need(self.guided_attention_sigma > 0.0, "guided_attention_sigma", "it must be > 0 (0.2 in the paper)")
        heads = self.guided_attention_heads
        need(
            heads is None
            or (
                isinstance(heads, (list, tuple))
                and len(heads) > 0
                and all(
                    isinstance(h, (list, tuple)) and len(h) == 2 and all(isinstance(i, int) and i >= 0 for i in h)
                    for h in heads
                )
            ),
            "guided_attention_heads",
            "it must be a non-empty list of [layer, head] pairs",
        )
        need(
            self.guided_attention_weight == 0.0 or heads is not None,
            "guided_attention_heads",
            "guided_attention_weight > 0 needs the [layer, head] pairs to guide",
        )
        need(
            self.speech_positions in ("sequential", "aligned"),
            "speech_positions",
            "it must be 'sequential' (the paper's) or 'aligned'",
        )
        need(
            math.isfinite(self.text_tokens_per_frame) and self.text_tokens_per_frame > 0.0,
            "text_tokens_per_frame",
            "it must be a finite number > 0 (text tokens per feature frame, about 0.25 for phonemes at 50 frames/s)",
        )
        need(0.0 <= self.speech_position_jitter <= 1.0, "speech_position_jitter", "it must be in [0, 1]")
        need(
            self.encoder_hidden_size % self.encoder_num_heads == 0,
            "encoder_hidden_size",
            f"it must be divisible by encoder_num_heads={self.encoder_num_heads}",
        )
        need(
            self.locdit_hidden_size % self.locdit_num_heads == 0,
            "locdit_hidden_size",
            f"it must be divisible by locdit_num_heads={self.locdit_num_heads}",
        )
        for field in ("feature_mean", "feature_std"):
            stats = getattr(self, field)
            need(
                stats is None or len(stats) == self.feature_dim,
                field,
                f"it must hold feature_dim={self.feature_dim} values (got {None if stats is None else len(stats)})",
            )
        if self.feature_std is not None:
            need(all(s > 0 for s in self.feature_std), "feature_std", "every value must be > 0")
        need(
            (self.feature_mean is None) == (self.feature_std is None),
            "feature_mean",
            "feature_mean and feature_std must be given together",
        )
        if not hasattr(self.text_config, "hidden_size"):
            raise ValueError(
                f"DiTARConfig: `text_config` must be a causal LM config with a `hidden_size` "
                f"(got {type(self.text_config).__name__})."
            )


__all__ = ["DiTARConfig"]
