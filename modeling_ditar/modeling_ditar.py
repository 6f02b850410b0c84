"""DiTAR model: aggregation encoder -> causal LM backbone -> LocDiT, with the training loss and cached generation.

Shape legend: B batch, L text length, T frames, N patches, P frames per patch (`patch_size`), K history patches,
D feature dim, H backbone hidden size, S merged sequence length.

Sequence per row: [text tokens] [start-of-speech] [patch_1] ... [patch_N]. The backbone output at start-of-speech
predicts patch_1, at patch_i it predicts patch_{i+1}; the stop head on the output at patch_N says "last patch".

Frames beyond the last whole patch (T mod P) are dropped: a patch is used only when all its P frames are real.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, Cache, DynamicCache, GenerationMixin, PreTrainedModel, StaticCache
from transformers import initialization as init
from transformers.cache_utils import DynamicLayer
from transformers.utils import ModelOutput, logging

from .aggregation_encoder import DiTARAggregationEncoder
from .audio_utils import soft_limit
from .backbone_decoding import decode_step, growing_dynamic_cache, make_cache_grow_in_place, supports_decode_step
from .candidate_pruning import choose_candidates, losing_candidates, prefix_ctc_loss
from .configuration_ditar import DiTARConfig
from .generation_ditar import (
    GENERATION_DEFAULTS,
    SHORT_SPEECH_SLACK_SECONDS,
    SPEAKING_RATE_SHORT_FACTOR,
    DiTARGenerationConfig,
    GenerationSettings,
    cut_by_cap_message,
    reject_unknown_kwargs,
    repeat_for_candidates,
    resolve_generation_settings,
    split_generation_kwargs,
    too_short_message,
    warn_ignored_generation_flags,
    warn_once,
)
from .guided_attention import AttentionReader, guided_attention_loss
from .locdit import LocDiT
from .lora import DiTARLoraMixin
from .low_precision import (
    LowPrecisionLinear,
    bound_onednn_shape_caches,
    resolve_matmul_dtype,
    set_linear_matmul_dtype,
)
from .sampling import GuidedVelocity, PatchSampler, cosine_alpha_sigma, shifted_time
from .spectrum_matching import prompt_spectrum_matches
from .speech_positions import aligned_positions, check_rate, jitter_rate, speaking_rate
from .streaming import StreamingVocoder
from .transformer_blocks import DiTARTransformerStack
from .vocoder_griffinlim import GriffinLimVocoder
from .vocoder_hifigan import build_speecht5_hifigan
from .vocoder_vocos import VocosConvNeXtBlock, VocosVocoder

logger = logging.get_logger(__name__)

# The patch cap of a call without `max_new_patches` allows this many times the patches the text takes at the voice
# prompt's speaking rate (see `DiTARForConditionalGeneration.default_max_new_patches`).
SPEAKING_RATE_CAP_FACTOR = 3.0

# `labels` and `inputs_embeds` in forward's keywords: what peft's task wrappers (`task_type="CAUSAL_LM"`, ...) pass to
# a token LM; the refusal alone would not say that the task type, not the caller's inputs, is the cause.
_TASK_WRAPPER_HINT = (
    "These are the arguments of a token language model, as peft's task wrappers pass them (get_peft_model with "
    "LoraConfig(task_type='CAUSAL_LM') or another task_type). DiTAR is not one: its loss needs no labels. Leave "
    "task_type unset, e.g. get_peft_model(model, LoraConfig(r=8, target_modules=['q_proj', 'v_proj'])), or use "
    "model.add_adapter(LoraConfig(...)); with transformers' Trainer, pass speech_features and no labels."
)


@dataclass
class DiTAROutput(ModelOutput):
    """Training output of [`DiTARForConditionalGeneration.forward`].

    loss: diffusion_loss + stop_loss_weight * stop_loss (+ ctc_loss_weight * ctc_loss). diffusion_loss: velocity MSE
    on the noisy patch positions. stop_loss: BCE of the stop head. ctc_loss: the optional auxiliary CTC loss.
    stop_logits: [B, 1+N] at start-of-speech and every patch position.
    speech_hidden_states: [B, 1+N, H] backbone outputs at those positions.
    """

    loss: torch.FloatTensor | None = None
    diffusion_loss: torch.FloatTensor | None = None
    stop_loss: torch.FloatTensor | None = None
    stop_logits: torch.FloatTensor | None = None
    speech_hidden_states: torch.FloatTensor | None = None
    ctc_loss: torch.FloatTensor | None = None
    guided_attention_loss: torch.FloatTensor | None = None


@dataclass
class DiTARGenerationOutput(ModelOutput):
    """Output of [`DiTARForConditionalGeneration.generate`].

    features: [B, T, D] generated features on the model's normalised scale, zero after each row's length; a vocoder
        reads `model.denormalize_features(features)` (log-mel), not these.
    lengths: [B] frames generated per row (a multiple of patch_size).
    stopped: [B] True where the stop head ended the row, False where `max_new_patches` did.
    """

    features: torch.FloatTensor | None = None
    lengths: torch.LongTensor | None = None
    stopped: torch.BoolTensor | None = None


@dataclass
class _SpeechPass:
    """What one backbone pass over text + speech gives the training loss: hidden [B, 1+N, H] (start-of-speech, then
    one output per patch), patches [B, N, P, D] with patch_mask [B, N] and num_patches [B], speech_mask [B, 1+N],
    speech_index [B, 1+N] (positions of the speech outputs in the merged sequence) and merged_mask [B, S]."""

    hidden: torch.Tensor
    patches: torch.Tensor
    patch_mask: torch.Tensor
    num_patches: torch.Tensor
    speech_mask: torch.Tensor
    speech_index: torch.Tensor
    merged_mask: torch.Tensor


@dataclass
class PatchStep:
    """One step of [`DiTARForConditionalGeneration.generate_patches`]: the patch just produced for every row
    ([B, P, D]), which rows were still active when it was produced, and which rows are finished after it.
    `dropped` [B]: rows that candidate pruning has dropped as losing candidates so far (they finish there without
    stopping); None when the call does not prune candidates."""

    index: int
    patch: torch.Tensor
    active: torch.Tensor
    finished: torch.Tensor
    stopped: torch.Tensor
    dropped: torch.Tensor | None = None


@dataclass
class GenerationSpeedups:
    """How [`DiTARForConditionalGeneration.generate`] runs; `model.generation_speedups` holds one.

    Every switch keeps the numbers (equal to float32 rounding; the library's tests check each against the
    reference path, which `DiTARForConditionalGeneration.disable_fast_generation()` selects):

    fast_blocks: lean inference path of the diffusers blocks and LocDiT's per-patch prepared inputs (condition and
        history projected once per patch, time embeddings once per grid, only the noisy positions computed in the last
        block).
    inline_euler: the Euler update written inline on step sizes taken from the scheduler's sigmas (otherwise
        `scheduler.step` every step); only for a plain `FlowMatchEulerDiscreteScheduler`.
    skip_full_masks: no backbone attention mask on cached one-token steps when no row is padded (batch 1).
    fast_backbone: the backbone's one-token steps run its decoder layers' own parts without transformers' per-call
        wrappers (Llama, Mistral and Qwen2 layers; others take the model's forward), and the dynamic KV cache grows in
        place instead of being copied for every token (`backbone_decoding`).
    prune_finished: rows that have finished leave the batch and the KV cache, so a batch costs less as rows stop. A row
        then runs in a smaller batch, which changes float rounding (about 1e-6), hence off by default.
    static_cache: transformers' `StaticCache` sized to prefix + max_new_patches instead of `DynamicCache` (no pruning).
    compile: `torch.compile` LocDiT's per-step call (`compile_mode`, `compile_dynamic` are passed on); falls back to
        eager, with a warning, if compiling fails.
    """

    fast_blocks: bool = True
    inline_euler: bool = True
    skip_full_masks: bool = True
    fast_backbone: bool = True
    prune_finished: bool = False
    static_cache: bool = False
    compile: bool = False
    compile_mode: str | None = None
    compile_dynamic: bool | None = None


class DiTARPreTrainedModel(PreTrainedModel):
    """Base class of the DiTAR models: ties them to [`DiTARConfig`], declares the attention backends they support and
    initialises their weights (zero output projections, normal position and special embeddings, the vocoder's
    buffers)."""

    config_class = DiTARConfig
    base_model_prefix = "ditar"
    main_input_name = "input_ids"
    input_modalities = ("text", "audio")
    supports_gradient_checkpointing = True
    # Only our own blocks; the backbone contributes its decoder layer class itself.
    _no_split_modules = ["DiTARTransformerBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _apply(self, fn, recurse=True):
        """Moves and casts like any module, but keeps the backbone's float32 rotary frequencies (`inv_freq`) in float32
        when the model is cast to half precision: loading with `dtype=torch.float16` keeps them so (transformers
        computes them in float32 and never casts them), and rounding them would make `.to(torch.float16)` sample other
        audio than such a load, and a cast back to float32 other audio than before."""
        rotary = {
            (module, name): buffer
            for module in self.modules()
            for name, buffer in module._buffers.items()
            if name.endswith("inv_freq") and buffer is not None and buffer.dtype == torch.float32
        }
        super()._apply(fn, recurse)
        for (module, name), original in rotary.items():
            cast = module._buffers.get(name)
            if cast is not None and cast.is_floating_point() and torch.finfo(cast.dtype).bits < 32:
                module._buffers[name] = original.to(cast.device)
        return self

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear) and getattr(module, "_ditar_zero_init", False):
            init.zeros_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, DiTARTransformerStack):
            init.normal_(module.position_embedding, mean=0.0, std=std)
        elif isinstance(module, DiTARAggregationEncoder):
            init.normal_(module.special_token, mean=0.0, std=std)
        elif isinstance(module, DiTARForConditionalGeneration):
            init.normal_(module.speech_start_embedding, mean=0.0, std=std)
        elif isinstance(module, (GriffinLimVocoder, VocosVocoder)):
            # buffers computed from its config (its layers, if any, are initialised as modules of their own); rebuilt
            # here because loading creates them empty
            for name, value in module._build_buffers().items():
                init.copy_(getattr(module, name), value)
        elif isinstance(module, VocosConvNeXtBlock):
            init.constant_(module.gamma, module.layer_scale_init)
        else:
            super()._init_weights(module)


class DiTARForConditionalGeneration(DiTARLoraMixin, DiTARPreTrainedModel, GenerationMixin):
    r"""
    DiTAR: aggregation encoder -> causal LM backbone -> LocDiT. `forward` is the training loss; `generate` samples
    speech features patch by patch with the settings of `generation_config` ([`DiTARGenerationConfig`]).
    """

    # Inheriting GenerationMixin directly keeps the class the same whether it is imported or loaded as remote code
    # (transformers adds the mixin to remote classes that lack it); `generate` below replaces the token loop.
    generation_config_class = DiTARGenerationConfig
    # a pipeline folder's root weights also hold the text-to-speech model's vocoder, which this model does not use
    # ... and a folder whose model has a candidate LocDiT loads into a config without one (training drops it)
    _keys_to_ignore_on_load_unexpected = [r"^vocoder\.", r"^candidate_locdit\."]

    def __init__(self, config: DiTARConfig):
        super().__init__(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.aggregation_encoder = DiTARAggregationEncoder(config)
        self.locdit = LocDiT(config)
        # optional: a cheaper LocDiT (a distilled few-step student) for the patches sampled while candidates compete
        self.candidate_locdit = LocDiT(config) if config.candidate_locdit else None
        self.stop_head = nn.Linear(config.text_config.hidden_size, 1)
        # Optional auxiliary alignment loss (config.ctc_loss_weight): per patch, `ctc_frames_per_patch` distributions
        # over the text vocabulary plus a blank (the last class).
        self.ctc_head = (
            nn.Linear(config.text_config.hidden_size, config.ctc_frames_per_patch * (config.text_config.vocab_size + 1))
            if config.ctc_loss_weight > 0
            else None
        )
        self.speech_start_embedding = nn.Parameter(torch.zeros(config.text_config.hidden_size))
        # inference settings (not weights, not config): see `enable_fast_generation`
        self.generation_speedups = GenerationSpeedups()
        self._compiled_locdit_step = None
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, then a check that every weight is finite: a checkpoint holding NaN or
        Inf raises a ValueError naming its weight file instead of loading silently. A config with `candidate_locdit`
        whose weights hold none is refused too: a freshly initialised candidate LocDiT would sample noise. Loaded with
        `candidate_locdit=False` from a folder that has one, the model also drops that student's
        `candidate_num_inference_steps`, as `remove_candidate_locdit()` does.

        Weights stored in half precision (float16 or bfloat16, to stay small) are computed in float32 unless `dtype=`
        asks otherwise: CPUs without native half-precision kernels run them several times slower. This holds however
        the model is loaded (this class, `AutoModel`, a diffusers or transformers pipeline with remote code).
        `dtype="auto"` keeps the stored dtype of the model's own folder (`model/`, which `DiTARPipeline` loads); the
        root config of a pipeline folder, which the transformers entry points read, records float32, since
        transformers' `pipeline()` passes `dtype="auto"` by default: there, ask for `dtype=torch.float16`."""
        output_loading_info = kwargs.pop("output_loading_info", False)
        hub = {k: kwargs[k] for k in ("subfolder", "revision", "cache_dir", "token", "local_files_only") if k in kwargs}
        stored = {}  # the saved config (None: weights passed as a state_dict with a config)
        if pretrained_model_name_or_path is not None:
            stored, _ = cls.config_class.get_config_dict(pretrained_model_name_or_path, **hub)
        if kwargs.get("dtype") is None and kwargs.get("torch_dtype") is None:
            if stored.get("dtype", stored.get("torch_dtype")) in ("float16", "bfloat16"):
                kwargs["dtype"] = torch.float32
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        source = _weights_source(pretrained_model_name_or_path, kwargs.get("subfolder"))
        missing = sorted(key for key in info["missing_keys"] if key.startswith("candidate_locdit."))
        if missing:
            raise ValueError(
                f"{source}: the config sets candidate_locdit, but the weights hold no candidate LocDiT ({len(missing)} "
                f"tensors missing, e.g. {missing[0]}). Load with candidate_locdit=False to sample the candidates with "
                "LocDiT itself, or save the model again with its distilled candidate LocDiT."
            )
        if model.candidate_locdit is None and model.generation_config.candidate_num_inference_steps is not None:
            if stored.get("candidate_locdit"):
                # loaded without the folder's candidate LocDiT (candidate_locdit=False): as remove_candidate_locdit()
                # does, the student's step count goes with it, so that LocDiT samples the candidates at its own steps
                model.generation_config.candidate_num_inference_steps = None
        check_finite_parameters(model, source)
        return (model, info) if output_loading_info else model

    def save_pretrained(self, save_directory, *args, variant=None, max_shard_size=None, push_to_hub=False, **kwargs):
        """transformers' `save_pretrained` (refused while LoRA layers are in place; the weight files get the mode of the
        other files, where safetensors writes them private). With `push_to_hub=True` the model is then uploaded by
        [`push_to_hub`], with its DiTAR model card and remote code, to `repo_id` (by default the folder's name); the
        commit and card settings are those of `push_to_hub`. `variant` and `max_shard_size` are named because a
        diffusers pipeline passes a component only the arguments its signature names."""
        from .hub_utils import make_saved_weights_readable, push_keywords, weight_file_inodes

        hub = {key: kwargs.pop(key) for key in list(kwargs) if key in push_keywords()} if push_to_hub else {}
        earlier = weight_file_inodes(save_directory)
        saved = super().save_pretrained(save_directory, *args, variant=variant, max_shard_size=max_shard_size, **kwargs)
        make_saved_weights_readable(save_directory, earlier)  # safetensors writes them private
        if push_to_hub and kwargs.get("is_main_process", args[0] if args else True):
            saved_as = {"variant": variant, "max_shard_size": max_shard_size}
            repo_id = hub.pop("repo_id", os.path.basename(os.path.normpath(save_directory)))
            self.push_to_hub(repo_id, **{key: value for key, value in saved_as.items() if value is not None}, **hub)
        return saved

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload the model (weights, config, generation config and remote code) with a rendered DiTAR model card in
        one commit, as a pipeline's `push_to_hub` does (transformers' own would write a generic card). Keywords:
        `commit_message`, `commit_description`, `private`, `token`, `revision`, `create_pr`, `variant`,
        `max_shard_size`, and card settings such as `results="eval/results.json"` or `tags` (see
        `hub_utils.push_to_hub` and `hub_utils.render_model_card`). Returns the `CommitInfo`."""
        from .hub_utils import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    # ----------------------------------------------------------------------------------------------------------------
    # building blocks

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.language_model.set_input_embeddings(value)

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """transformers' `resize_token_embeddings` (the backbone's token embeddings and
        `config.text_config.vocab_size`), and the CTC head's classes with them, since it names the same tokens: every
        frame keeps the rows of the tokens that remain and its blank as the last class; tokens added get the mean of
        the frame's token rows (`mean_resizing`, so that they start as likely as an average token), or normal weights
        and a zero bias. The config then describes the resized model, so it saves and loads as it is."""
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        vocab = self.config.text_config.vocab_size
        frames = self.config.ctc_frames_per_patch
        if self.ctc_head is not None and self.ctc_head.out_features != frames * (vocab + 1):
            self.ctc_head = _resized_ctc_head(
                self.ctc_head, frames, vocab, mean_resizing, self.config.initializer_range
            )
        return embeddings

    def normalize_features(self, features: torch.Tensor) -> torch.Tensor:
        """Raw features (e.g. log-mel) -> the normalised space the model works in (identity without statistics)."""
        if self.config.feature_mean is None:
            return features
        mean = features.new_tensor(self.config.feature_mean)
        std = features.new_tensor(self.config.feature_std)
        return (features - mean) / std

    def denormalize_features(self, features: torch.Tensor) -> torch.Tensor:
        if self.config.feature_mean is None:
            return features
        mean = features.new_tensor(self.config.feature_mean)
        std = features.new_tensor(self.config.feature_std)
        return features * std + mean

    def patchify(
        self, features: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, D] frames -> [B, N, P, D] patches with N = T // P and a [B, N] mask of patches whose P frames are
        all real. Trailing frames that do not fill a whole patch are dropped."""
        batch, num_frames, dim = features.shape
        patch = self.config.patch_size
        num_patches = num_frames // patch
        patches = features[:, : num_patches * patch].reshape(batch, num_patches, patch, dim)
        if frame_mask is None:
            patch_mask = torch.ones(batch, num_patches, dtype=torch.bool, device=features.device)
        else:
            frame_mask = frame_mask[:, : num_patches * patch].bool().reshape(batch, num_patches, patch)
            patch_mask = frame_mask.all(dim=-1)
        return patches, patch_mask

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, N, P, D] -> [B, N, H] through the aggregation encoder."""
        if patches.shape[1] == 0:
            return patches.new_zeros(patches.shape[0], 0, self.config.text_config.hidden_size)
        return self.aggregation_encoder(patches.to(self.dtype))

    def _embed_prompt_patches(self, patches: torch.Tensor, candidates: int) -> torch.Tensor:
        """`embed_patches` of the voice prompts, run once per text where its `candidates` consecutive rows hold the
        same prompt (generate() repeats each text's inputs for its candidates) and repeated for them."""
        if patches.shape[1] > 0 and _repeated_per_candidate(candidates, patches):
            return self.embed_patches(patches[::candidates]).repeat_interleave(candidates, dim=0)
        return self.embed_patches(patches)

    @staticmethod
    def _merge_sequences(
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        speech_embeds: torch.Tensor,
        speech_mask: torch.Tensor,
        left_pad: bool,
        speech_positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pack each row's real text tokens followed by its real speech positions contiguously.

        text_embeds [B, L, H] (real tokens anywhere, given by text_mask [B, L]); speech_embeds [B, N', H] with real
        positions first (speech_mask [B, N']). Rows are right-padded (training) or left-padded (generation, so every
        row's last real position is the last column).
        Returns embeds [B, S, H], attention_mask [B, S], position_ids [B, S] and speech_index [B, N'] (column of each
        speech position in the merged sequence; padded positions point at the last column).
        Position ids count the merged sequence (0 at each row's first real column) unless `speech_positions` [B, N']
        (float, config `speech_positions="aligned"`) is given: then text tokens count 0..L-1 and speech columns take
        those values.
        """
        batch, _, hidden = text_embeds.shape
        text_mask, speech_mask = text_mask.bool(), speech_mask.bool()
        text_len = text_mask.sum(1)
        total = text_len + speech_mask.sum(1)
        length = int(total.max())
        offset = (length - total) if left_pad else torch.zeros_like(total)
        dump = length  # padded entries are written to an extra column that is cut off

        text_index = offset[:, None] + text_mask.long().cumsum(1) - 1
        text_index = torch.where(text_mask, text_index, dump)
        speech_index = offset[:, None] + text_len[:, None] + speech_mask.long().cumsum(1) - 1
        speech_index = torch.where(speech_mask, speech_index, dump)

        merged = text_embeds.new_zeros(batch, length + 1, hidden)
        merged = merged.scatter(1, text_index[..., None].expand(-1, -1, hidden), text_embeds)
        merged = merged.scatter(1, speech_index[..., None].expand(-1, -1, hidden), speech_embeds)

        columns = torch.arange(length, device=text_embeds.device)[None]
        attention_mask = (columns >= offset[:, None]) & (columns < (offset + total)[:, None])
        if speech_positions is None:
            position_ids = (columns - offset[:, None]).clamp(min=0)
        else:
            positions = torch.zeros(batch, length + 1, device=text_embeds.device, dtype=torch.float32)
            positions = positions.scatter(1, text_index, (text_mask.long().cumsum(1) - 1).float())
            positions = positions.scatter(1, speech_index, speech_positions.float())
            position_ids = positions[:, :length]
        return merged[:, :length], attention_mask.long(), position_ids, speech_index.clamp(max=length - 1)

    def _run_backbone(self, embeds, attention_mask, position_ids, cache: DynamicCache | None):
        """Backbone forward on embeddings. The cache argument is `cache` from transformers 5.24 on and
        `past_key_values` before; the name is looked up once from the backbone's signature."""
        kwargs = {"inputs_embeds": embeds, "attention_mask": attention_mask, "position_ids": position_ids}
        if cache is not None:
            kwargs[_cache_argument_name(type(self.language_model))] = cache
        return self.language_model(**kwargs, use_cache=cache is not None)

    @staticmethod
    def _history_windows(patches: torch.Tensor, num_history: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For every target patch i, the K patches before it: [B, N, P, D] -> [B, N, K, P, D] and a [B, N, K] mask
        that is False where the history would reach before the first patch."""
        batch, num_patches = patches.shape[:2]
        padded = F.pad(patches, (0, 0, 0, 0, num_history, 0))  # K zero patches in front
        windows = torch.stack([padded[:, j : j + num_patches] for j in range(num_history)], dim=2)
        target = torch.arange(num_patches, device=patches.device)[:, None]
        offsets = torch.arange(num_history, device=patches.device)[None]
        mask = (target - num_history + offsets) >= 0  # [N, K]
        return windows, mask[None].expand(batch, -1, -1)

    # ----------------------------------------------------------------------------------------------------------------
    # training

    def forward(
        self,
        input_ids: torch.LongTensor,
        speech_features: torch.FloatTensor,
        attention_mask: torch.LongTensor | None = None,
        speech_attention_mask: torch.LongTensor | None = None,
        speech_position_rate: torch.FloatTensor | float | None = None,
        return_dict: bool | None = None,
        return_loss: bool = True,
        **kwargs,
    ) -> DiTAROutput | tuple:
        """Training loss for right-padded batches.

        Args:
            input_ids: [B, L] text tokens (prompt transcript + target text), padded anywhere per `attention_mask`.
            speech_features: [B, T, D] normalised features of the whole utterance (prompt part included).
            attention_mask: [B, L] 1 for real text tokens.
            speech_attention_mask: [B, T] 1 for real frames (right padding).
            speech_position_rate: [B] text tokens per feature frame for `speech_positions="aligned"` (ignored by
                "sequential" models); by default each row's text length over its frames. Training on prompt +
                target pairs passes the prompt part's rate, which is what generation can know.
            return_loss: whether the output holds `loss`, the weighted sum of the losses. The model computes its loss
                from the speech itself, with no `labels`; this argument, True by default as in CLIP, is how
                transformers' `Trainer` learns that, and so reports `eval_loss` from `evaluate()` and `predict()`.
                False leaves `loss` out (None, or not in the tuple); the parts (`diffusion_loss`, `stop_loss`, ...) and
                the stop logits are still computed, since they are this model's outputs.
        """
        reject_unknown_kwargs(
            "forward",
            kwargs,
            (
                "input_ids",
                "speech_features",
                "attention_mask",
                "speech_attention_mask",
                "speech_position_rate",
                "return_dict",
                "return_loss",
            ),
            hint=_TASK_WRAPPER_HINT if {"labels", "inputs_embeds"} & set(kwargs) else None,
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        config = self.config
        self._check_training_inputs(input_ids, speech_features, attention_mask, speech_attention_mask)
        if torch.is_grad_enabled():  # a training step (validation losses run without gradients)
            self._warn_about_the_training_setup(speech_features, speech_attention_mask)
        device = input_ids.device
        text_mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)

        reader = None
        if config.guided_attention_weight > 0:
            reader = AttentionReader(self.language_model, [tuple(h) for h in config.guided_attention_heads])
        input_patches = None
        if self.training and config.scheduled_sampling_prob > 0:
            input_patches = self._noisy_inputs(
                self._scheduled_sampling_inputs(
                    input_ids, speech_features, text_mask, speech_attention_mask, speech_position_rate
                )
            )
        speech = self._speech_pass(
            input_ids, speech_features, text_mask, speech_attention_mask, speech_position_rate, reader, input_patches
        )
        hidden, patches, patch_mask, num_patches = speech.hidden, speech.patches, speech.patch_mask, speech.num_patches
        speech_mask, speech_index, merged_mask = speech.speech_mask, speech.speech_index, speech.merged_mask

        # Stop: target 1 at the last real patch, 0 at start-of-speech and every earlier patch.
        stop_logits = self.stop_head(hidden).squeeze(-1).float()  # [B, 1+N]
        positions = torch.arange(stop_logits.shape[1], device=device)[None]
        stop_target = (positions == num_patches[:, None]).float()
        stop_loss = F.binary_cross_entropy_with_logits(stop_logits, stop_target, reduction="none")
        stop_loss = (stop_loss * speech_mask).sum() / speech_mask.sum()

        diffusion_loss = self._diffusion_loss(hidden[:, :-1], patches, patch_mask)
        loss = diffusion_loss + config.stop_loss_weight * stop_loss
        ctc_loss = None
        if self.ctc_head is not None:
            ctc_loss = self._ctc_loss(self._ctc_hidden(hidden), num_patches, input_ids, text_mask)
            loss = loss + config.ctc_loss_weight * ctc_loss
        guided_loss = None
        if reader is not None:
            # speech_index[:, j] is the position whose output predicts patch j (start-of-speech for patch 0)
            guided_loss = guided_attention_loss(
                reader, speech_index[:, :-1], patch_mask, merged_mask, text_mask.sum(1), config.guided_attention_sigma
            )
            loss = loss + config.guided_attention_weight * guided_loss
        if not return_loss:
            loss = None
        if not return_dict:
            extra = tuple(extra_loss for extra_loss in (ctc_loss, guided_loss) if extra_loss is not None)
            total = () if loss is None else (loss,)
            return (*total, diffusion_loss, stop_loss, stop_logits, hidden, *extra)
        return DiTAROutput(
            loss=loss,
            diffusion_loss=diffusion_loss,
            stop_loss=stop_loss,
            stop_logits=stop_logits,
            speech_hidden_states=hidden,
            ctc_loss=ctc_loss,
            guided_attention_loss=guided_loss,
        )

    def _speech_pass(
        self,
        input_ids,
        speech_features,
        text_mask,
        speech_attention_mask,
        speech_position_rate,
        reader=None,
        input_patches=None,
    ) -> _SpeechPass:
        """One backbone pass over [text] [start-of-speech] [patches of speech_features] (right-padded rows), shared by
        the training loss and `transcript_ctc_loss`. `reader` (guided attention) watches the backbone's attention.
        `input_patches` [B, N, P, D], when given, are what the backbone reads in place of speech_features' own patches
        (which stay the returned targets); otherwise it reads those, with `input_noise_std` noise in training."""
        config = self.config
        batch, device = input_ids.shape[0], input_ids.device
        patches, patch_mask = self.patchify(speech_features.to(self.dtype), speech_attention_mask)  # [B,N,P,D] [B,N]
        num_patches = patch_mask.sum(1)
        if bool((num_patches == 0).any()):
            rows = (num_patches == 0).nonzero().flatten().tolist()
            raise ValueError(
                f"speech_features rows {rows} have fewer than patch_size={config.patch_size} real frames; "
                "drop such utterances or pad them with real audio."
            )
        hidden_size = config.text_config.hidden_size
        start = self.speech_start_embedding.to(self.dtype).expand(batch, 1, hidden_size)
        reads = self._noisy_inputs(patches) if input_patches is None else input_patches.to(patches.dtype)
        speech_embeds = torch.cat([start, self.embed_patches(reads)], dim=1)  # [B, 1+N, H]
        speech_mask = torch.cat([patch_mask.new_ones(batch, 1), patch_mask], dim=1)  # [B, 1+N]
        text_embeds = self.get_input_embeddings()(input_ids)  # [B, L, H]

        speech_positions = None
        if config.speech_positions == "aligned":
            if speech_position_rate is None:
                frames = (
                    speech_attention_mask.sum(1)
                    if speech_attention_mask is not None
                    else torch.full((batch,), speech_features.shape[1], device=device)
                )
                rate = speaking_rate(text_mask.sum(1), frames)
            else:
                rate = check_rate(speech_position_rate, batch, device)
            if self.training:
                rate = jitter_rate(rate, config.speech_position_jitter)
            speech_positions = aligned_positions(speech_embeds.shape[1], rate * config.patch_size)
        embeds, merged_mask, position_ids, speech_index = self._merge_sequences(
            text_embeds, text_mask, speech_embeds, speech_mask, left_pad=False, speech_positions=speech_positions
        )
        if self.training and torch.is_grad_enabled():
            self._warn_about_positions_past_the_backbone(position_ids, merged_mask)
        with reader or contextlib.nullcontext():
            backbone_out = self._run_backbone(embeds, merged_mask, position_ids, None)
        hidden = backbone_out.last_hidden_state.gather(
            1, speech_index[..., None].expand(-1, -1, hidden_size)
        )  # [B, 1+N, H]

        return _SpeechPass(hidden, patches, patch_mask, num_patches, speech_mask, speech_index, merged_mask)

    @torch.no_grad()
    def _scheduled_sampling_inputs(
        self, input_ids, speech_features, text_mask, speech_attention_mask, speech_position_rate
    ) -> torch.Tensor:
        """The patches the backbone reads in training with `scheduled_sampling_prob`: each row draws a share in
        [0, scheduled_sampling_prob] and each of its real patches is replaced with that probability by the patch
        generation would have sampled there from the real speech before it (the backbone's output over the real
        patches, the K real patches before it as LocDiT's history, the generation config's steps, guidance and
        temperature). No gradient flows through the samples: they are inputs, like the real patches."""
        config = self.config
        patches, patch_mask = self.patchify(speech_features.to(self.dtype), speech_attention_mask)
        replace = patch_mask & (
            torch.rand(patch_mask.shape, device=patch_mask.device)
            < torch.rand(patch_mask.shape[0], 1, device=patch_mask.device) * config.scheduled_sampling_prob
        )  # [B, N]
        if not bool(replace.any()):
            return patches
        real = self._speech_pass(
            input_ids, speech_features, text_mask, speech_attention_mask, speech_position_rate, input_patches=patches
        )
        cond = real.hidden[:, :-1][replace]  # [R, H]: the output at patch j-1 (start-of-speech for j = 0) predicts j
        history = history_mask = None
        if config.num_history_patches > 0:
            windows, window_mask = self._history_windows(patches, config.num_history_patches)
            history = windows[replace].flatten(1, 2)  # [R, K*P, D]
            history_mask = window_mask[replace].repeat_interleave(config.patch_size, dim=1)  # [R, K*P]
        settings = resolve_generation_settings(self.generation_config)
        sampled = PatchSampler().sample(
            GuidedVelocity(self.locdit, cond, history, history_mask, settings.guidance_scale),
            (cond.shape[0], config.patch_size, config.feature_dim),
            settings.num_inference_steps,
            settings.temperature,
            device=patches.device,
            dtype=self.dtype,
        )  # [R, P, D]
        mixed = patches.clone()
        mixed[replace] = sampled.to(patches.dtype)
        return mixed

    def _noisy_inputs(self, patches: torch.Tensor) -> torch.Tensor:
        """The patches the backbone reads in training, with `input_noise_std` noise (a level per row); the clean patches
        stay the diffusion targets and LocDiT's history. Unchanged outside training."""
        max_std = self.config.input_noise_std
        if not self.training or max_std <= 0:
            return patches
        std = torch.rand(patches.shape[0], 1, 1, 1, device=patches.device, dtype=patches.dtype) * max_std
        return patches + std * torch.randn_like(patches)

    def transcript_ctc_loss(
        self,
        input_ids: torch.LongTensor,
        speech_features: torch.FloatTensor,
        attention_mask: torch.LongTensor | None = None,
        speech_attention_mask: torch.LongTensor | None = None,
        speech_position_rate: torch.FloatTensor | float | None = None,
    ) -> torch.FloatTensor:
        """Per row, the CTC head's negative log-likelihood of the transcript given the speech, per text token: [B].

        Lower means speech whose patches the head reads as its text in order; it is `inf` where the speech has too
        few patches for its text. Generation with `num_candidates > 1` keeps the candidate with the lowest value.
        Inputs as for `forward` (right-padded rows, normalised features); call it in eval mode (training mode jitters
        the speaking rate of "aligned" positions)."""
        text_mask, speech = self._transcript_speech_pass(
            input_ids, speech_features, attention_mask, speech_attention_mask, speech_position_rate
        )
        nll = self._ctc_loss(
            self._ctc_hidden(speech.hidden),
            speech.num_patches,
            input_ids,
            text_mask,
            reduction="none",
            zero_infinity=False,
        )
        return nll / text_mask.sum(1).clamp(min=1)

    def transcript_prefix_ctc_loss(
        self,
        input_ids: torch.LongTensor,
        speech_features: torch.FloatTensor,
        attention_mask: torch.LongTensor | None = None,
        speech_attention_mask: torch.LongTensor | None = None,
        speech_position_rate: torch.FloatTensor | float | None = None,
    ) -> torch.FloatTensor:
        """Per row, the CTC head's negative log-likelihood of the best *prefix* of the transcript given speech that may
        have said only part of its text so far, per CTC frame: [B].

        The alignment may end anywhere in the text (`prefix_ctc_loss`), so a candidate that has spoken the first words
        of its text well scores low whether it is ahead or behind another. Dividing by the frames, not by the tokens
        of the prefix, keeps that fair: candidates of one text at the same point have the same frames, and a score per
        token would favour whichever has read further. Generation with `candidate_prune_after_patches` keeps the
        candidate with the lowest value. Inputs as for `transcript_ctc_loss`."""
        text_mask, speech = self._transcript_speech_pass(
            input_ids, speech_features, attention_mask, speech_attention_mask, speech_position_rate
        )
        return self._prefix_ctc_score(speech.hidden, speech.num_patches, input_ids, text_mask)

    def _prefix_ctc_score(
        self, speech_hidden: torch.Tensor, num_patches: torch.Tensor, input_ids: torch.Tensor, text_mask: torch.Tensor
    ) -> torch.Tensor:
        """`transcript_prefix_ctc_loss` from the backbone outputs at [start][patches] (`speech_hidden` [B, 1+N, H],
        right-padded, `num_patches` [B] real patches) and the text (`input_ids` [B, L], real where `text_mask`)."""
        log_probs = self._ctc_log_probs(self._ctc_hidden(speech_hidden))  # [B, N*F, C]
        frames, blank = self.config.ctc_frames_per_patch, log_probs.shape[-1] - 1
        # right-align each row's text tokens at the start of the target rows (left-padded text is allowed)
        text_mask = text_mask.bool()
        lengths = text_mask.sum(1)
        targets = torch.zeros(len(lengths), int(lengths.max()), dtype=torch.long, device=input_ids.device)
        targets[torch.arange(targets.shape[1], device=input_ids.device)[None] < lengths[:, None]] = input_ids[text_mask]
        nll, _ = prefix_ctc_loss(log_probs, num_patches * frames, targets, lengths, blank=blank)
        return nll / (num_patches * frames).clamp(min=1)

    def _prefix_scores_from_states(
        self,
        prefix_states: torch.Tensor,
        prefix_mask: torch.Tensor,
        patch_states: torch.Tensor,
        input_ids: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> torch.Tensor:
        """`transcript_prefix_ctc_loss` of every generated row ([B]) from the backbone states generation already has,
        instead of a second backbone pass over prompt + generated patches (`score_candidates(..., prefix=True)`; the
        same states up to float rounding, since that pass sees the same tokens at the same positions): the prefill's
        at [start][prompt patches] (`prefix_states` [B, 1+N', H], real ones where `prefix_mask`) and each decode
        step's at the patch it was fed (`patch_states` [B, N, H])."""
        rows = [
            torch.cat([prefix_states[row][prefix_mask[row].bool()], patch_states[row]])
            for row in range(prefix_states.shape[0])
        ]
        num_patches = torch.tensor([len(row) - 1 for row in rows], device=patch_states.device)
        speech_hidden = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        return self._prefix_ctc_score(speech_hidden, num_patches, input_ids, text_mask).float()

    def score_candidates(self, inputs: dict, rows: list[torch.Tensor], prefix: bool = False) -> torch.Tensor:
        """`transcript_ctc_loss` of every generated row ([B*K]): its text and its prompt + generated patches
        (normalised), scored as the backbone saw them during generation, the prompt cut to whole patches. `inputs` are
        the generation inputs (`input_ids`, `attention_mask`, `prompt_features`, `prompt_attention_mask`, optional
        `speech_position_rate`), one row per candidate. `prefix=True` scores unfinished candidates with
        `transcript_prefix_ctc_loss` instead."""
        score = self.transcript_prefix_ctc_loss if prefix else self.transcript_ctc_loss
        patch = self.config.patch_size
        prompts, prompt_masks = inputs.get("prompt_features"), inputs.get("prompt_attention_mask")
        texts, speeches = [], []
        for row, generated in enumerate(rows):
            texts.append(inputs["input_ids"][row][inputs["attention_mask"][row].bool()])
            if prompts is not None:
                prompt = prompts[row] if prompt_masks is None else prompts[row][prompt_masks[row].bool()]
                prompt = prompt[: (prompt.shape[0] // patch) * patch]
                speeches.append(torch.cat([prompt, generated.to(prompt.dtype)]))
            else:
                speeches.append(generated)

        # one backbone pass for every row: right-padded text and speech with their masks, as in training batches
        def pad(tensors: list[torch.Tensor]) -> torch.Tensor:
            return nn.utils.rnn.pad_sequence(tensors, batch_first=True)

        speech_masks = [torch.ones(len(speech), dtype=torch.long, device=speech.device) for speech in speeches]
        # speech_position_rate: one per row, or one for every row (a float or a 0-d tensor), as `generate` takes it
        return score(
            pad(texts),
            pad(speeches).to(self.dtype),
            attention_mask=pad([torch.ones_like(text) for text in texts]),
            speech_attention_mask=pad(speech_masks),
            speech_position_rate=inputs.get("speech_position_rate"),
        ).float()

    def _ctc_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """The backbone outputs [B, N, H] the CTC head reads, out of all speech outputs [B, 1+N, H]: hidden[:, i]
        predicts patch i and has seen patches < i; hidden[:, i + 1] has seen patch i itself."""
        return hidden[:, :-1] if self.config.ctc_position == "prediction" else hidden[:, 1:]

    def _transcript_speech_pass(
        self, input_ids, speech_features, attention_mask, speech_attention_mask, speech_position_rate
    ) -> tuple[torch.Tensor, _SpeechPass]:
        """The text mask and the backbone pass that transcript scoring reads, after checking there is a CTC head."""
        if self.ctc_head is None:
            raise ValueError(
                "this model has no CTC head (config.ctc_loss_weight = 0), so it cannot score transcripts; train with "
                "ctc_loss_weight > 0 or generate with num_candidates=1."
            )
        self._check_training_inputs(input_ids, speech_features, attention_mask, speech_attention_mask)
        text_mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        speech = self._speech_pass(input_ids, speech_features, text_mask, speech_attention_mask, speech_position_rate)
        return text_mask, speech

    def _ctc_log_probs(self, patch_hidden: torch.Tensor) -> torch.Tensor:
        """Per-frame CTC log-probabilities [B, N*F, C] (F predictions per patch; the last class is the blank)."""
        batch, num, _ = patch_hidden.shape
        frames, classes = self.config.ctc_frames_per_patch, self.config.text_config.vocab_size + 1
        return self.ctc_head(patch_hidden).float().view(batch, num * frames, classes).log_softmax(-1)

    def _ctc_loss(
        self,
        patch_hidden: torch.Tensor,
        num_patches: torch.Tensor,
        input_ids: torch.Tensor,
        text_mask: torch.Tensor,
        reduction: str = "mean",
        zero_infinity: bool = True,
    ) -> torch.Tensor:
        """CTC between the backbone outputs at the patches (patch_hidden [B, N, H], F predictions each) and each row's
        text tokens; for training, utterances too short for their text contribute zero (zero_infinity)."""
        log_probs = self._ctc_log_probs(patch_hidden).transpose(0, 1)  # [N*F, B, C]
        text_mask = text_mask.bool()
        return F.ctc_loss(
            log_probs,
            input_ids[text_mask],
            input_lengths=num_patches * self.config.ctc_frames_per_patch,
            target_lengths=text_mask.sum(1),
            blank=log_probs.shape[-1] - 1,
            reduction=reduction,
            zero_infinity=zero_infinity,
        )

    def _diffusion_loss(self, cond: torch.Tensor, patches: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """v-prediction MSE for every real patch: LocDiT sees h (predicting that patch), its K clean history patches and
        the noisy patch. cond [B, N, H], patches [B, N, P, D], patch_mask [B, N]."""
        config = self.config
        num_history = config.num_history_patches
        repeats = config.diffusion_batch_mul if self.training else 1
        x0 = patches[patch_mask].repeat(repeats, 1, 1)  # [M * repeats, P, D]: each copy gets its own noise level
        h = cond[patch_mask].repeat(repeats, 1)  # [M * repeats, H]
        items = x0.shape[0]
        device = x0.device
        if self.training and config.cfg_dropout_prob > 0:
            keep = torch.rand(items, 1, device=device) >= config.cfg_dropout_prob
            h = h * keep.to(h.dtype)

        history = history_mask = None
        if num_history > 0:
            windows, window_mask = self._history_windows(patches, num_history)
            history = windows[patch_mask].flatten(1, 2).repeat(repeats, 1, 1)  # [M * repeats, K*P, D]
            item_mask = window_mask[patch_mask].repeat(repeats, 1)  # [M * repeats, K]
            if self.training and config.history_dropout_prob > 0:
                item_mask = item_mask & (torch.rand(items, 1, device=device) >= config.history_dropout_prob)
            history_mask = item_mask.repeat_interleave(config.patch_size, dim=1)  # [M * repeats, K*P]

        # in eval mode the same batch always draws the same noise levels and noise, from a generator of its own: an
        # evaluation loss (e.g. `Trainer`'s eval_loss, used to pick the best checkpoint) is then comparable from call
        # to call, and evaluating leaves the training's random stream untouched
        generator = None if self.training else torch.Generator(device=device).manual_seed(0)
        t = shifted_time(
            torch.rand(items, device=device, generator=generator),
            config.diffusion_time_shift if self.training else 1.0,
        )
        noise = torch.randn(x0.shape, device=device, dtype=torch.float32, generator=generator)
        alpha, sigma = cosine_alpha_sigma(t)
        alpha, sigma = alpha[:, None, None], sigma[:, None, None]
        x0 = x0.float()
        x_t = alpha * x0 + sigma * noise
        target = alpha * noise - sigma * x0
        prediction = self.locdit(x_t.to(self.dtype), t, h, history, history_mask)
        return F.mse_loss(prediction.float(), target)

    def _check_training_inputs(self, input_ids, speech_features, attention_mask, speech_attention_mask):
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError(f"input_ids must be a [batch, text_length] tensor, got {_shape(input_ids)}.")
        self._check_token_ids(input_ids)
        if not isinstance(speech_features, torch.Tensor) or speech_features.dim() != 3:
            raise ValueError(
                f"speech_features must be a [batch, frames, feature_dim] tensor, got {_shape(speech_features)}."
            )
        if speech_features.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"input_ids has batch size {input_ids.shape[0]} but speech_features has {speech_features.shape[0]}."
            )
        if speech_features.shape[-1] != self.config.feature_dim:
            raise ValueError(
                f"speech_features has feature_dim {speech_features.shape[-1]}, the model expects "
                f"config.feature_dim={self.config.feature_dim}."
            )
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} must match input_ids {tuple(input_ids.shape)}."
            )
        if speech_attention_mask is not None and speech_attention_mask.shape != speech_features.shape[:2]:
            raise ValueError(
                f"speech_attention_mask {tuple(speech_attention_mask.shape)} must be [batch, frames] = "
                f"{tuple(speech_features.shape[:2])}."
            )
        _check_right_padded(speech_attention_mask, "speech_attention_mask")
        _check_rows_not_empty(attention_mask, "attention_mask", "no text token; every row needs its text")
        _check_finite(speech_features, "speech_features", speech_attention_mask)

    def _warn_about_the_training_setup(self, speech_features: torch.Tensor, speech_attention_mask) -> None:
        """Mistakes of a hand-written training loop that train a different model without an error: the model left
        in eval mode (`from_pretrained` returns it so), which turns off what only training does (the dropout that
        trains the unconditional branch guidance needs, history dropout, input noise, position jitter); and raw
        features where the model reads normalised ones (`normalize_features`), seen as real frames whose per-channel
        means sit closer to the feature statistics than to the normalised space's zero. A candidate LocDiT left
        trainable is named too."""
        config = self.config
        if not self.training and any(p.requires_grad for p in self.parameters()):
            logger.warning_once(
                "forward computes a training loss with gradients while the model is in eval mode, so what only "
                "training does is off (cfg_dropout_prob, which trains the unconditional branch that guidance needs; "
                "history dropout; input noise; position jitter): call model.train() before training steps."
            )
        candidate = self.candidate_locdit
        if self.training and candidate is not None and any(p.requires_grad for p in candidate.parameters()):
            logger.warning_once(
                "this model carries a candidate LocDiT (the fast student that samples generation's candidates), which "
                "forward does not train: it goes stale as LocDiT trains, and multi-process training refuses "
                "parameters without gradients. Load the model with candidate_locdit=False for training, or freeze "
                "it: model.candidate_locdit.requires_grad_(False)."
            )
        if config.feature_mean is None:
            return
        with torch.no_grad():
            frames = speech_features.detach().float()
            mask = (
                torch.ones(frames.shape[:2], device=frames.device)
                if speech_attention_mask is None
                else speech_attention_mask.to(frames.device, frames.dtype)
            )
            count = mask.sum()
            if count < 1:
                return
            channel_means = (frames * mask[..., None]).sum((0, 1)) / count
            mean = channel_means.new_tensor(config.feature_mean)
            std = channel_means.new_tensor(config.feature_std)
            as_normalised = channel_means.pow(2).mean()
            as_raw = ((channel_means - mean) / std).pow(2).mean()
        if as_raw < as_normalised:
            logger.warning_once(
                "speech_features look un-normalised: their channel means are close to the model's feature statistics "
                "(config.feature_mean), where normalised features sit near 0. The model learns and generates "
                "normalised features: pass model.normalize_features(features)."
            )

    def _warn_about_positions_past_the_backbone(self, position_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """A training row that reaches past the backbone's `max_position_embeddings` trains positions that generation
        never reaches (it refuses or shortens a text that would), so that part of the training is spent for nothing."""
        maximum = getattr(self.config.text_config, "max_position_embeddings", None)
        if not maximum:
            return
        furthest = position_ids.masked_fill(attention_mask == 0, 0).max()
        if bool(furthest >= maximum):
            logger.warning_once(
                f"training rows reach positions past the backbone's max_position_embeddings ({maximum}), for "
                "example an utterance with a long text: generation never goes there (it refuses or shortens a text "
                "that would), so those positions are trained for nothing. Leave out or cut the long utterances, "
                "or raise config.text_config.max_position_embeddings."
            )

    def _check_token_ids(self, input_ids: torch.Tensor) -> None:
        """Token ids must be integers inside the backbone's vocabulary (else the embedding lookup fails deep inside
        torch, or reads another row's memory on some devices)."""
        if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
            raise TypeError(
                f"input_ids must hold integer token ids (torch.long), got dtype {input_ids.dtype}; encode the text "
                "with the processor, or pass ids.long()."
            )
        vocab = self.get_input_embeddings().num_embeddings
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
            low, high = int(input_ids.min()), int(input_ids.max())
            raise ValueError(
                f"input_ids holds ids from {low} to {high}, outside the vocabulary of {vocab} tokens (0 to "
                f"{vocab - 1}); encode the text with this model's processor (its tokenizer has the same vocabulary)."
            )

    # ----------------------------------------------------------------------------------------------------------------
    # generation

    def enable_fast_generation(
        self,
        compile: bool = True,
        static_cache: bool = False,
        prune_finished: bool = True,
        compile_mode: str | None = None,
        compile_dynamic: bool | None = None,
    ) -> DiTARForConditionalGeneration:
        """Turn on every generation speed-up (see [`GenerationSpeedups`]); `compile=True` also compiles LocDiT's
        per-step call with `torch.compile` on the first generation (tens of seconds once per process and input shape; it
        falls back to eager with a warning where compiling is not possible). `compile_mode` is one of torch.compile's
        modes ("default", "reduce-overhead", "max-autotune", ...) or None. Returns the model."""
        for name, value in (("compile", compile), ("static_cache", static_cache), ("prune_finished", prune_finished)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}.")
        if compile_dynamic is not None and not isinstance(compile_dynamic, bool):
            raise ValueError(f"compile_dynamic must be True, False or None, got {compile_dynamic!r}.")
        if compile_mode is not None:
            try:  # torch.compile's own list, where this torch has it
                from torch._inductor import list_mode_options

                modes = sorted(list_mode_options())
            except (ImportError, AttributeError):
                modes = ["default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead"]
            if compile_mode not in modes:
                raise ValueError(f"compile_mode must be None or one of {modes}, got {compile_mode!r}.")
            if not compile:
                raise ValueError(f"compile_mode={compile_mode!r} needs compile=True; it sets how LocDiT is compiled.")
        self.generation_speedups = GenerationSpeedups(
            static_cache=static_cache,
            prune_finished=prune_finished,
            compile=compile,
            compile_mode=compile_mode,
            compile_dynamic=compile_dynamic,
        )
        self._compiled_locdit_step = None
        return self

    def disable_fast_generation(self) -> DiTARForConditionalGeneration:
        """Generate on the reference path: diffusers blocks' own forward, `scheduler.step` every ODE step, full masks,
        no pruning, no compile. Returns the model."""
        self.generation_speedups = GenerationSpeedups(
            fast_blocks=False, inline_euler=False, skip_full_masks=False, fast_backbone=False, prune_finished=False
        )
        self._compiled_locdit_step = None
        self._apply_block_setting()
        return self

    def set_locdit_dtype(self, dtype: torch.dtype) -> DiTARForConditionalGeneration:
        """Cast LocDiT (and the candidate LocDiT, if any) to `dtype` and leave the rest of the model as it is: LocDiT's
        small matrices gain most from bfloat16 on CPUs that multiply it natively. LocDiT casts its inputs itself.
        Casting loses precision: going back to float32 does not restore the weights (reload the model for that);
        [`set_matmul_dtype`] multiplies in bfloat16 and keeps float32 weights."""
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(
                f"dtype must be a floating-point torch.dtype (torch.float32, torch.bfloat16 or torch.float16), got "
                f"{dtype!r}."
            )
        if dtype == torch.bfloat16:
            bound_onednn_shape_caches()
        for locdit in (self.locdit, self.candidate_locdit):
            if locdit is not None:
                locdit.to(dtype)
        return self

    def set_matmul_dtype(self, dtype: torch.dtype | str | None) -> DiTARForConditionalGeneration:
        """Multiply in `dtype` inside the model's transformers: the linears of the backbone, the aggregation encoder and
        LocDiT (and the candidate LocDiT) keep their float32 parameters and multiply a `torch.bfloat16` copy of them,
        while norms, attention, residual sums and the KV cache stay in float32 (`low_precision.LowPrecisionLinear`).
        On CPUs with AVX512-BF16 and no AMX this makes generation markedly faster; with AMX (Intel Xeon) it was measured
        slower, and without native bfloat16 it is slower still. "auto" picks bfloat16 for a float32 model on the first
        kind of CPU (`low_precision.cpu_multiplies_bfloat16`) and float32 otherwise; `torch.float32` (or
        "float32", None) switches back. Embeddings, heads and the vocoder are left as they are; parameters, state dict
        and training are unchanged. Returns the model."""
        dtype = resolve_matmul_dtype(dtype, self)
        # the backbone's linears are its decoder layers' (its embeddings are not linears; a backbone built on other
        # layer types, such as GPT-2's Conv1D, keeps multiplying in its own dtype)
        for module in (self.language_model, self.aggregation_encoder, self.locdit, self.candidate_locdit):
            if module is not None:
                set_linear_matmul_dtype(module, dtype)
        return self

    @property
    def matmul_dtype(self) -> torch.dtype:
        """The dtype the backbone multiplies in (see `set_matmul_dtype`)."""
        for module in self.language_model.modules():
            # only float32 weights take other products (see `LowPrecisionLinear.forward`)
            if (
                isinstance(module, LowPrecisionLinear)
                and module.weight.dtype == torch.float32
                and module.matmul_dtype != torch.float32
            ):
                return module.matmul_dtype
        return next(p.dtype for p in self.language_model.parameters() if p.is_floating_point())

    def remove_candidate_locdit(self) -> DiTARForConditionalGeneration:
        """Drop the candidate LocDiT (`config.candidate_locdit` becomes False): after LocDiT or the backbone were
        trained further, a student distilled from the old ones no longer matches them. Candidates are then sampled with
        LocDiT itself at `num_inference_steps`: the generation config's `candidate_num_inference_steps` was the
        student's step count (one step of a LocDiT trained for several would give poor candidates), so it is reset to
        None. Set it again to sample the candidates with fewer LocDiT steps."""
        if self.candidate_locdit is not None or self.config.candidate_locdit:
            self.generation_config.candidate_num_inference_steps = None
        self.candidate_locdit = None
        self.config.candidate_locdit = False
        return self

    def _apply_block_setting(self):
        fast = self.generation_speedups.fast_blocks
        for module in self.modules():
            if isinstance(module, DiTARTransformerStack):
                module.fast_inference = fast

    def _new_cache(self, batch: int, max_length: int):
        if self.generation_speedups.static_cache:
            return StaticCache(config=self.config.text_config, max_cache_len=max_length)
        if self.generation_speedups.fast_backbone:
            return growing_dynamic_cache(self.config.text_config)
        return DynamicCache(config=self.config.text_config)

    @torch.no_grad()
    def text_prefix_cache(self, input_ids: torch.LongTensor) -> DynamicCache:
        """The backbone's KV cache over text tokens that begin every row of later calls (a voice's transcript, see
        `DiTARVoice.prefix_cache`), computed as the prefill of `generate` computes those columns: rows without padding,
        positions from 0. Pass a copy as `past_key_values` to `generate` / `generate_patches`."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand(input_ids.shape[0], -1)
        if self.config.speech_positions == "aligned":
            positions = positions.float()
        cache = DynamicCache(config=self.config.text_config)
        self._run_backbone(self.get_input_embeddings()(input_ids), torch.ones_like(input_ids), positions, cache)
        return cache

    def _locdit_step_fn(self) -> Callable | None:
        """LocDiT's per-step call for the sampler: None (eager `forward_prepared`) or a compiled one."""
        settings = self.generation_speedups
        if not (settings.compile and settings.fast_blocks):
            return None
        if self._compiled_locdit_step is None:
            self._compiled_locdit_step = _CompiledLocDiTStep(settings.compile_mode, settings.compile_dynamic)
        return self._compiled_locdit_step

    def generation_settings(self, generation_config=None, **overrides) -> GenerationSettings:
        """The sampling settings of one call: `overrides` that are not None, else the values of `generation_config`
        that are not None, else the model's `generation_config`, else the library defaults (transformers' order and
        rule: only a passed config's None or absent settings are filled from the model's); every value checked."""
        settings = resolve_generation_settings(
            generation_config if generation_config is not None else self.generation_config,
            fallback_config=self.generation_config,
            **overrides,
        )
        if settings.num_candidates > 1 and self.ctc_head is None:
            raise ValueError(
                f"num_candidates={settings.num_candidates} needs the model's CTC head to rank the candidates, and "
                "this model has none (config.ctc_loss_weight = 0); use num_candidates=1."
            )
        return settings

    def default_max_new_patches(
        self,
        text_lengths: torch.Tensor,
        settings: GenerationSettings | None = None,
        prompt_frames: torch.Tensor | None = None,
        speech_position_rate: torch.Tensor | float | None = None,
    ):
        """Per-row bound on generated patches derived from the number of text tokens (never unbounded):
        `ceil(max_patches_per_text_token * text_length) + min_max_new_patches` from the generation settings.

        With the prompt's length in frames (`prompt_frames` [B]) and its speaking rate (`speech_position_rate` [B],
        its transcript's tokens per frame), the bound is also at most `SPEAKING_RATE_CAP_FACTOR` times the patches the
        target text takes at the prompt's pace, plus `min_max_new_patches`: the text length counts the prompt's
        transcript too, and a long transcript must not let the speech of a short text run on."""
        settings = settings if settings is not None else self.generation_settings()
        factor = settings.max_patches_per_text_token
        limit = (text_lengths.float() * factor).ceil().long() + settings.min_max_new_patches
        if prompt_frames is None or speech_position_rate is None:
            return limit
        rate = torch.as_tensor(speech_position_rate, dtype=torch.float32, device=limit.device).expand(limit.shape)
        frames = torch.as_tensor(prompt_frames, device=limit.device).float().expand(limit.shape)
        target_tokens = tokens_after_prompt(text_lengths.to(limit.device).float(), frames, rate).clamp(min=1.0)
        tokens_per_patch = rate * self.config.patch_size
        paced = (SPEAKING_RATE_CAP_FACTOR * target_tokens / tokens_per_patch.clamp(min=1e-6)).ceil()
        paced = paced.clamp(max=float(limit.max())).long() + settings.min_max_new_patches
        usable = (rate > 0) & (frames > 0)
        return torch.where(usable, torch.minimum(limit, paced), limit)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        prompt_features: torch.FloatTensor | None = None,
        prompt_attention_mask: torch.LongTensor | None = None,
        max_new_patches: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        temperature: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        use_cache: bool = True,
        scheduler=None,
        patch_callback: Callable[[PatchStep], None] | None = None,
        speech_position_rate: torch.FloatTensor | float | None = None,
        generation_config=None,
        past_key_values: DynamicCache | None = None,
        **kwargs,
    ) -> DiTARGenerationOutput:
        """Generate speech features patch by patch.

        Args:
            input_ids: [B, L] prompt transcript + target text tokens (left or right padded per `attention_mask`).
            prompt_features: [B, T_p, D] normalised features of the prompt audio (optional); frames after the last
                whole patch are dropped.
            max_new_patches: bound on generated patches; default per row
                `ceil(max_patches_per_text_token * text_length) + min_max_new_patches`.
            num_inference_steps, guidance_scale, temperature: sampler settings (defaults from `generation_config`).
                guidance_scale g >= 0: v = v(0) + g (v(h) - v(0)), 1 disables guidance (paper's w = g - 1).
                temperature tau in [0, 1]: time on the reverse ODE where noise is injected; 0 is deterministic.
            generator: a `torch.Generator` or one per row (per-row generators make a row independent of its batch).
            use_cache: reuse the backbone's KV cache (`DynamicCache`); False recomputes the whole sequence each patch.
            scheduler: a diffusers flow-matching scheduler; default `FlowMatchEulerDiscreteScheduler(shift=1)`.
            patch_callback: called with a [`PatchStep`] after every patch.
            speech_position_rate: [B] text tokens per feature frame of the prompt (the processor returns it as
                `speech_position_rate`); used by `speech_positions="aligned"` models, which otherwise assume
                `config.text_tokens_per_frame`; ignored by "sequential" ones.
            generation_config: a `GenerationConfig` for this call, merged as transformers merges it: its settings
                that are not None replace those of `self.generation_config`, its None or absent ones stay the
                model's (a `GenerationConfig(temperature=0.3)` changes the temperature alone); keyword arguments that
                name a DiTAR generation setting (e.g. `num_candidates`, `stop_threshold`) override both.
            past_key_values: the backbone's KV cache of text tokens that begin every row (rows without padding), as
                `DiTARVoice.prefix_cache(model)` returns it; the prefill then runs on the columns after them only. It
                is extended in place: pass a fresh copy each call.

        With `num_candidates` K > 1 every text is sampled K times in one batch (a list of generators gives each
        candidate of text i a generator seeded from generator i) and the candidate whose speech the CTC head reads as
        the text most closely (`score_candidates`) is kept; `patch_callback` then sees all K rows of every text. With
        `candidate_prune_after_patches` N, each text keeps only its best candidate so far after N patches (see
        `candidate_pruning`), so the rest costs one candidate; streaming keeps the same one.

        Speed: `self.generation_speedups` ([`GenerationSpeedups`]) selects the fast paths; the defaults give the same
        numbers as the reference path (`disable_fast_generation()`), `enable_fast_generation()` adds pruning of finished
        rows, `torch.compile` and optionally a static cache.
        """
        if patch_callback is not None and not callable(patch_callback):
            raise TypeError(
                f"patch_callback must be a function fn(patch_step) or None, got {type(patch_callback).__name__}."
            )
        num_candidates = self.generation_settings(
            generation_config,
            num_candidates=kwargs.pop("num_candidates", None),
            **{k: v for k, v in kwargs.items() if k in GENERATION_DEFAULTS},
        ).num_candidates
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "prompt_features": prompt_features,
            "prompt_attention_mask": prompt_attention_mask,
            "speech_position_rate": speech_position_rate,
        }
        batch = input_ids.shape[0] if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 else None
        if batch is not None:  # malformed input_ids are refused by generate_patches, with the reason
            inputs, generator = repeat_for_candidates(inputs, generator, num_candidates)
        patches, stopped, lengths, dropped = [], None, None, None
        for step in self.generate_patches(
            inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            prompt_features=inputs["prompt_features"],
            prompt_attention_mask=inputs["prompt_attention_mask"],
            max_new_patches=max_new_patches,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            temperature=temperature,
            generator=generator,
            use_cache=use_cache,
            scheduler=scheduler,
            speech_position_rate=inputs["speech_position_rate"],
            generation_config=generation_config,
            past_key_values=past_key_values,
            candidates_per_text=num_candidates if batch is not None else 1,
            **kwargs,
        ):
            patches.append(step.patch * step.active[:, None, None])
            stopped, dropped = step.stopped, step.dropped
            lengths = step.active.long() if lengths is None else lengths + step.active.long()
            if patch_callback is not None:
                patch_callback(step)
        features = torch.stack(patches, dim=1).flatten(1, 2)  # [B*K, N*P, D]
        lengths = lengths * self.config.patch_size
        if num_candidates > 1 and batch is not None:
            rows = [features[row, : int(lengths[row])] for row in range(features.shape[0])]
            inputs = {k: v for k, v in inputs.items() if v is not None}
            best = torch.tensor(choose_candidates(self, inputs, rows, num_candidates, dropped), device=features.device)
            features, lengths, stopped = features[best], lengths[best], stopped[best]
            features = features[:, : int(lengths.max())]
        return DiTARGenerationOutput(features=features, lengths=lengths, stopped=stopped)

    def _fit_positions(self, position_ids, limit, position_step, text_tokens, capped: bool) -> torch.Tensor:
        """The patch cap `limit` [B] within the backbone's `max_position_embeddings`: past the positions it was trained
        on, rotary embeddings give no usable attention and the speech degrades without an error. Inputs that fill the
        positions themselves, and a `max_new_patches` the caller set past them, are refused; a derived cap is lowered
        to what fits, with a warning (the pipeline speaks a long text sentence by sentence instead)."""
        maximum = getattr(self.config.text_config, "max_position_embeddings", None)
        if not maximum:
            return limit
        hint = "Give a shorter text (DiTARPipeline speaks a long text sentence by sentence)"
        used = position_ids.float().amax(dim=1)
        if bool((used >= maximum - 1).any()):
            row = int(torch.nonzero(used >= maximum - 1).flatten()[0])
            raise ValueError(
                f"row {row}: its {int(text_tokens[row])} text tokens and its prompt need positions up to "
                f"{int(used[row])}, past the backbone's max_position_embeddings {maximum}. {hint}."
            )
        step = torch.as_tensor(position_step, dtype=torch.float32, device=limit.device).reshape(-1)
        room = ((maximum - 1 - position_ids[:, -1].float().to(limit.device)) / step).floor().long().clamp(min=1)
        if not bool((limit > room).any()):
            return limit
        row = int(torch.nonzero(limit > room).flatten()[0])
        if capped:
            raise ValueError(
                f"max_new_patches={int(limit[row])} passes the backbone's max_position_embeddings {maximum} in row "
                f"{row}, where {int(room[row])} patches fit after its {int(text_tokens[row])} text tokens and prompt. "
                f"{hint}, or a smaller max_new_patches."
            )
        warn_once(  # once per process, not per text: the room left differs from text to text
            logger,
            "patch cap lowered to the backbone's positions",
            f"The patch cap of a long text was lowered to what the backbone's max_position_embeddings ({maximum}) "
            f"leaves ({int(room[row])} patches in row {row}): its speech may be cut. {hint}.",
        )
        return torch.minimum(limit, room)

    @torch.no_grad()
    def generate_patches(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        prompt_features: torch.FloatTensor | None = None,
        prompt_attention_mask: torch.LongTensor | None = None,
        max_new_patches: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        temperature: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        use_cache: bool = True,
        scheduler=None,
        speech_position_rate: torch.FloatTensor | float | None = None,
        generation_config=None,
        past_key_values: DynamicCache | None = None,
        candidates_per_text: int = 1,
        **kwargs,
    ) -> Iterator[PatchStep]:
        """The autoregressive loop of [`generate`] as an iterator of [`PatchStep`]s (for streaming).

        Per patch: LocDiT solves the patch's ODE (condition and history prepared once, `num_inference_steps` calls with
        cond/uncond packed), the aggregation encoder embeds the patch and the backbone takes one cached step. With
        `generation_speedups.prune_finished`, rows that have finished leave the batch and the KV cache; their
        `PatchStep.patch` rows are then zeros.

        `candidates_per_text` K: the rows are K consecutive candidates of each text, as `generate` lays them out. With
        K > 1 and the setting `candidate_prune_after_patches` N, after N patches every text whose candidates are all
        still running keeps only the one with the lowest `transcript_prefix_ctc_loss`; the others finish there (not
        stopped, marked in `PatchStep.dropped`) and leave the batch and the KV cache. With the setting
        `candidate_shared_patches` S, a text's K candidates take the same draws for their first S patches, so those
        patches are the same in every candidate (streaming plays them before the ranking)."""
        config = self.config
        known = (
            "stop_threshold",
            "max_patches_per_text_token",
            "min_max_new_patches",
            "candidate_prune_after_patches",
            "candidate_early_prune_after_patches",
            "candidate_early_prune_margin",
            "candidate_shared_patches",
            "candidate_num_inference_steps",
        )
        check_weights_in_memory(self)
        if "num_candidates" in kwargs:
            raise TypeError(
                "generate_patches() samples every row once and takes no num_candidates; generate() samples "
                "num_candidates per text and keeps the best."
            )
        reject_unknown_kwargs(
            "generate",
            {k: v for k, v in kwargs.items() if k not in known},
            (
                "input_ids",
                "attention_mask",
                "prompt_features",
                "prompt_attention_mask",
                "max_new_patches",
                "num_inference_steps",
                "guidance_scale",
                "temperature",
                "generator",
                "use_cache",
                "scheduler",
                "patch_callback",
                "speech_position_rate",
                "generation_config",
                "num_candidates",
                "past_key_values",
                "candidates_per_text",
                *known,
            ),
        )
        settings = self.generation_settings(
            generation_config,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            temperature=temperature,
            max_new_patches=max_new_patches,
            **kwargs,
        )
        num_inference_steps, guidance_scale = settings.num_inference_steps, settings.guidance_scale
        temperature, max_new_patches = settings.temperature, settings.max_new_patches
        self._check_generation_inputs(input_ids, attention_mask, prompt_features, prompt_attention_mask, generator)
        batch, device, dtype = input_ids.shape[0], input_ids.device, self.dtype
        if not (isinstance(candidates_per_text, int) and candidates_per_text >= 1 and batch % candidates_per_text == 0):
            raise ValueError(
                f"candidates_per_text must be an integer >= 1 that divides the batch ({batch} rows), got "
                f"{candidates_per_text!r}; generate() lays out num_candidates rows per text."
            )
        prune_after = settings.candidate_prune_after_patches if candidates_per_text > 1 else None
        early_prune = settings.candidate_early_prune_after_patches if prune_after else None
        shared_patches = settings.candidate_shared_patches if candidates_per_text > 1 else 0
        if prune_after and self.ctc_head is None:
            raise ValueError(
                "candidate_prune_after_patches needs the model's CTC head to rank the candidates, and this model has "
                "none (config.ctc_loss_weight = 0); use num_candidates=1."
            )
        hidden_size, patch_size, num_history = (
            config.text_config.hidden_size,
            config.patch_size,
            config.num_history_patches,
        )
        text_mask = (
            attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
        )

        # 1. prefix: [text] [start-of-speech] [prompt patches], left-padded so every row ends in the last column
        if prompt_features is not None:
            prompt_patches, prompt_mask = self.patchify(prompt_features.to(dtype), prompt_attention_mask)
        else:
            prompt_patches = torch.zeros(batch, 0, patch_size, config.feature_dim, device=device, dtype=dtype)
            prompt_mask = torch.zeros(batch, 0, dtype=torch.bool, device=device)
        start = self.speech_start_embedding.to(dtype).expand(batch, 1, hidden_size)
        speech_embeds = torch.cat([start, self._embed_prompt_patches(prompt_patches, candidates_per_text)], dim=1)
        speech_mask = torch.cat([prompt_mask.new_ones(batch, 1), prompt_mask], dim=1)
        speech_positions, position_step = None, 1
        if config.speech_positions == "aligned":
            rate = config.text_tokens_per_frame if speech_position_rate is None else speech_position_rate
            position_step = check_rate(rate, batch, device) * patch_size  # text tokens per patch
            speech_positions = aligned_positions(speech_embeds.shape[1], position_step)
        embeds, mask, position_ids, speech_columns = self._merge_sequences(
            self.get_input_embeddings()(input_ids),
            text_mask,
            speech_embeds,
            speech_mask,
            left_pad=True,
            speech_positions=speech_positions,
        )

        # 2. history: the last K real prompt patches of each row, right-aligned; missing ones masked
        history, history_valid = self._initial_history(prompt_patches, prompt_mask, num_history)

        limit = (
            self.default_max_new_patches(
                text_mask.sum(1),
                settings,
                prompt_frames=prompt_mask.sum(1) * patch_size if prompt_features is not None else None,
                speech_position_rate=speech_position_rate,
            )
            if max_new_patches is None
            else torch.full((batch,), max_new_patches, device=device, dtype=torch.long)
        )
        limit = self._fit_positions(position_ids, limit, position_step, text_mask.sum(1), max_new_patches is not None)
        max_steps = int(limit.max())
        speedups = self.generation_speedups
        self._apply_block_setting()
        sampler = PatchSampler(scheduler, use_scheduler_step=not speedups.inline_euler)
        if past_key_values is not None and not isinstance(past_key_values, Cache):
            raise TypeError(
                "past_key_values must be a transformers Cache of a text prefix (e.g. from `prefix_cache(...)`), got "
                f"{type(past_key_values).__name__}; leave it out to encode the text from the start."
            )
        cache = past_key_values
        if cache is None and use_cache:
            cache = self._new_cache(batch, embeds.shape[1] + max_steps)
        elif cache is not None and speedups.fast_backbone:
            make_cache_grow_in_place(cache)  # a voice's prefix cache: generation appends to it in any case
        # The K candidates of a text share its prefix (generate() repeats the text's inputs): the prefill runs on one
        # row per text, and its keys and values are repeated K times (a dynamic cache can; a static one cannot).
        same = _same_prefix_per_candidate(cache, candidates_per_text, embeds, mask, position_ids)
        repeats = candidates_per_text if same else 1
        unique = slice(None, None, repeats)
        if past_key_values is None:
            out = self._run_backbone(embeds[unique], mask[unique], position_ids[unique], cache)
        else:  # the cache holds the first `cached` columns (a text prefix shared by every row): prefill the rest
            cached, rows_cached = cache.get_seq_length(), _cache_rows(cache)
            if not use_cache or not bool(mask.all()) or not 0 < cached < embeds.shape[1] or batch % rows_cached:
                raise ValueError(
                    "past_key_values needs use_cache=True and rows without padding that are longer than the cached "
                    f"prefix ({cached} columns cached, rows of {embeds.shape[1]})."
                )
            if repeats > 1 and rows_cached == batch and _cache_repeated_per_candidate(cache, repeats):
                # one cached row per candidate (e.g. `prefix_cache(model, batch_size=B*K)`): keep one per text, so the
                # rest of the prefix is prefilled once per text as with a one-row-per-text cache
                cache.batch_select_indices(torch.arange(0, batch, repeats, device=device))
                rows_cached = batch // repeats
            if (batch // repeats) % rows_cached:
                repeats, unique = 1, slice(None)
            if rows_cached != batch // repeats:
                cache.batch_repeat_interleave(batch // repeats // rows_cached)
            out = self._run_backbone(embeds[unique, cached:], mask[unique], position_ids[unique, cached:], cache)
        h = out.last_hidden_state[:, -1]  # [B / repeats, H]
        # candidate pruning scores the speech so far from the backbone states generation computes anyway: the
        # prefill's at [start][prompt patches] and each step's at the new patch (`_prefix_scores_from_states`)
        prefix_states = None
        if prune_after:
            first_column = embeds.shape[1] - out.last_hidden_state.shape[1]  # columns a voice's cache held
            prefix_states = out.last_hidden_state.gather(
                1, (speech_columns[unique] - first_column)[..., None].expand(-1, -1, hidden_size)
            )  # [B / repeats, 1+N', H]
        if repeats > 1:
            cache.batch_repeat_interleave(repeats)
            h = h.repeat_interleave(repeats, dim=0)  # [B, H]
            prefix_states = None if prefix_states is None else prefix_states.repeat_interleave(repeats, dim=0)
        next_position = position_ids[:, -1] + position_step
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        stopped = torch.zeros(batch, dtype=torch.bool, device=device)
        # With no padded row (e.g. batch 1) every later mask is all ones: one-token cached steps need none (same
        # result).
        step_mask_needed = not (use_cache and speedups.skip_full_masks and bool(mask.all()))
        fast_steps = (
            use_cache and speedups.fast_backbone and supports_decode_step(self.language_model, cache, step_mask_needed)
        )
        # Finished rows leave the batch (and the KV cache) when that is possible; `rows` maps the rows still being
        # computed to their index in the full batch.
        can_select = cache is None or _cache_can_select_rows(cache)
        prune = speedups.prune_finished and can_select
        rows = torch.arange(batch, device=device)
        # candidate pruning: the backbone states at the patches so far (until the pruning point) and the rows dropped
        # as losing candidates
        dropped = torch.zeros(batch, dtype=torch.bool, device=device) if prune_after else None
        states_so_far: list[torch.Tensor] = []
        locdit_step = self._locdit_step_fn()
        # While a text's candidates compete (the patches before the pruning point, or all of them without pruning),
        # `candidate_locdit` and `candidate_num_inference_steps` sample them when set (else LocDiT and its steps): the
        # cheaper sampler serves the rows that are mostly thrown away and the part of the call streaming waits for.
        # Each phase keeps its own time embeddings (`time_cache`).
        candidate_patches = (prune_after or max_steps) if candidates_per_text > 1 else 0
        candidate_locdit = self.candidate_locdit if self.candidate_locdit is not None else self.locdit
        candidate_steps = settings.candidate_num_inference_steps or num_inference_steps
        time_caches: dict = {"main": {}, "candidate": {}}

        for index in range(max_steps):
            width = rows.shape[0]
            in_candidate_phase = index < candidate_patches
            history_frames = history.flatten(1, 2) if num_history > 0 else None  # [b, K*P, D]
            history_mask = history_valid.repeat_interleave(patch_size, dim=1) if num_history > 0 else None
            velocity = GuidedVelocity(
                candidate_locdit if in_candidate_phase else self.locdit,
                h,
                history_frames,
                history_mask,
                guidance_scale,
                time_cache=time_caches["candidate" if in_candidate_phase else "main"],
                forward_fn=locdit_step,
            )
            patch = sampler.sample(
                velocity,
                (width, patch_size, config.feature_dim),
                candidate_steps if in_candidate_phase else num_inference_steps,
                temperature,
                generator=generator,
                device=device,
                dtype=dtype,
                noise_rows=None if width == batch else (batch, rows),
                # a text's candidates share the first draws, so they share their first patches
                shared_noise_rows=candidates_per_text if index < shared_patches else 1,
            )  # [b, P, D]
            active = ~finished
            if num_history > 0:
                history = torch.cat([history[:, 1:], patch[:, None]], dim=1)
                history_valid = torch.cat([history_valid[:, 1:], history_valid.new_ones(width, 1)], dim=1)

            # feed the new patch back; the backbone output at it predicts the next patch and whether to stop
            patch_embed = self.embed_patches(patch[:, None])  # [b, 1, H]
            mask = torch.cat([mask, mask.new_ones(width, 1)], dim=1)
            if fast_steps:
                out = decode_step(
                    self.language_model, patch_embed, mask if step_mask_needed else None, next_position[:, None], cache
                )
            elif use_cache:
                out = self._run_backbone(patch_embed, mask if step_mask_needed else None, next_position[:, None], cache)
            else:
                embeds = torch.cat([embeds, patch_embed], dim=1)
                position_ids = torch.cat([position_ids, next_position[:, None]], dim=1)
                out = self._run_backbone(embeds, mask, position_ids, None)
            h = out.last_hidden_state[:, -1]
            next_position = next_position + position_step

            if width < batch:  # the stop head sees the full batch (rows that left it get zeros and are inactive)
                h_full = h.new_zeros(batch, h.shape[-1]).index_copy_(0, rows, h)
                full_patch = patch.new_zeros(batch, *patch.shape[1:]).index_copy_(0, rows, patch)
            else:
                h_full, full_patch = h, patch
            stop_now = active & (torch.sigmoid(self.stop_head(h_full).squeeze(-1).float()) > settings.stop_threshold)
            stopped = stopped | stop_now
            finished = finished | stop_now | (index + 1 >= limit)
            if dropped is not None and index < prune_after:
                states_so_far.append(h_full)
                if index + 1 in (early_prune, prune_after):
                    scores = self._prefix_scores_from_states(
                        prefix_states, speech_mask, torch.stack(states_so_far, dim=1), input_ids, text_mask
                    )
                    # early: only texts whose best candidate leads by the margin; texts decided early count as having
                    # finished candidates at the usual point and are left alone there
                    margin = settings.candidate_early_prune_margin if index + 1 == early_prune else None
                    dropped = dropped | losing_candidates(scores, finished, candidates_per_text, margin=margin)
                    finished = finished | dropped
            yield PatchStep(
                index=index,
                patch=full_patch,
                active=active,
                finished=finished.clone(),
                stopped=stopped.clone(),
                dropped=None if dropped is None else dropped.clone(),
            )
            if bool(finished.all()):
                break
            # rows that leave the batch: finished ones with `prune_finished`, else only dropped candidates
            leaving = finished if prune else (dropped if can_select else None)
            if leaving is not None:
                keep = (~leaving[rows]).nonzero().flatten()  # positions in the current batch of rows going on
                if keep.shape[0] < width:
                    rows, h, next_position, mask = rows[keep], h[keep], next_position[keep], mask[keep]
                    if isinstance(position_step, torch.Tensor):
                        position_step = position_step[keep]
                    if num_history > 0:
                        history, history_valid = history[keep], history_valid[keep]
                    if use_cache:
                        cache.batch_select_indices(keep)
                    else:
                        embeds, position_ids = embeds[keep], position_ids[keep]

    @staticmethod
    def _initial_history(
        prompt_patches: torch.Tensor, prompt_mask: torch.Tensor, num_history: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, patch_size, dim = prompt_patches.shape
        history = prompt_patches.new_zeros(batch, num_history, patch_size, dim)
        valid = torch.zeros(batch, num_history, dtype=torch.bool, device=prompt_patches.device)
        if num_history == 0 or prompt_patches.shape[1] == 0:
            return history, valid
        counts = prompt_mask.sum(1)  # real prompt patches per row (real ones come first)
        for j in range(num_history):
            source = counts - num_history + j  # index of the prompt patch that lands in history slot j
            ok = source >= 0
            gathered = prompt_patches[torch.arange(batch), source.clamp(min=0)]
            history[:, j] = torch.where(ok[:, None, None], gathered, history[:, j])
            valid[:, j] = ok
        return history, valid

    def _check_generation_inputs(self, input_ids, attention_mask, prompt_features, prompt_attention_mask, generator):
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be a non-empty [batch, text_length] tensor, got {_shape(input_ids)}.")
        self._check_token_ids(input_ids)
        batch = input_ids.shape[0]
        for name, mask in (("attention_mask", attention_mask), ("prompt_attention_mask", prompt_attention_mask)):
            if mask is not None and not isinstance(mask, torch.Tensor):
                raise ValueError(
                    f"{name} must be a torch.Tensor (1 for real positions, 0 for padding), got {type(mask).__name__}; "
                    "pass the processor's output with return_tensors='pt'."
                )
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask {tuple(attention_mask.shape)} must match input_ids {tuple(input_ids.shape)}."
                )
            if bool((attention_mask.sum(1) == 0).any()):
                raise ValueError("attention_mask has a row with no text token; every row needs text to speak.")
        if prompt_features is not None:
            if not isinstance(prompt_features, torch.Tensor) or prompt_features.dim() != 3:
                raise ValueError(
                    f"prompt_features must be a [batch, frames, feature_dim] tensor, got {_shape(prompt_features)}."
                )
            if prompt_features.shape[0] != batch:
                raise ValueError(
                    f"input_ids has batch size {batch} but prompt_features has {prompt_features.shape[0]}; "
                    "give one prompt per text row."
                )
            if prompt_features.shape[-1] != self.config.feature_dim:
                raise ValueError(
                    f"prompt_features has feature_dim {prompt_features.shape[-1]}, the model expects "
                    f"config.feature_dim={self.config.feature_dim}."
                )
            if not prompt_features.is_floating_point():
                raise ValueError(
                    f"prompt_features must be floating point (normalised log-mel frames), got {prompt_features.dtype}."
                )
            if not bool(torch.isfinite(prompt_features).all()):
                raise ValueError("prompt_features contains NaN or Inf values.")
            if prompt_attention_mask is not None and prompt_attention_mask.shape != prompt_features.shape[:2]:
                raise ValueError(
                    f"prompt_attention_mask {tuple(prompt_attention_mask.shape)} must be [batch, frames] = "
                    f"{tuple(prompt_features.shape[:2])}."
                )
            _check_right_padded(prompt_attention_mask, "prompt_attention_mask")
        elif prompt_attention_mask is not None:
            raise ValueError("prompt_attention_mask was given without prompt_features.")
        generators = generator if isinstance(generator, (list, tuple)) else [generator]
        if generator is not None and not all(isinstance(g, torch.Generator) for g in generators):
            raise TypeError(
                f"generator must be a torch.Generator or a list of them (one per row), got {generator!r:.60}; "
                "for a seed, pass generator=torch.Generator().manual_seed(seed)."
            )
        if isinstance(generator, (list, tuple)) and len(generator) != batch:
            raise ValueError(
                f"got {len(generator)} generators for a batch of {batch}; pass one per row or a single one."
            )


@dataclass
class DiTARSpeechOutput(ModelOutput):
    """Output of [`DiTARForTextToSpeech.generate`].

    audio: one float32 waveform [samples] per text, at `sampling_rate`.
    features: the de-normalised features [T, D] each waveform was vocoded from.
    stopped: [B] True where the stop head ended the text, False where the patch limit did.
    sampling_rate (attribute): the vocoder's rate (Hz), the model's `sampling_rate`.
    """

    audio: list[torch.FloatTensor] | None = None
    features: list[torch.FloatTensor] | None = None
    stopped: torch.BoolTensor | None = None

    # The rate is one number for the whole batch, so it is an attribute and not an output field: transformers'
    # pipelines split every field of a batch's output row by row (`pipeline("text-to-speech", batch_size=2)`).
    @property
    def sampling_rate(self) -> int | None:
        return self.__dict__.get("_sampling_rate")


# `vocoder_type` of a `DiTARConfig.vocoder_config` -> the vocoder class it builds (the other keys are its arguments;
# for "speecht5_hifigan", the fields of transformers' SpeechT5HifiGanConfig)
VOCODER_TYPES = {"griffin_lim": GriffinLimVocoder, "vocos": VocosVocoder, "speecht5_hifigan": build_speecht5_hifigan}


def build_vocoder(vocoder_config: dict) -> nn.Module:
    """The vocoder described by a `DiTARConfig.vocoder_config` (`{"vocoder_type": "griffin_lim" | "vocos" |
    "speecht5_hifigan", ...}`); a neural vocoder is built with random weights, which loading the model then fills."""
    options = dict(vocoder_config)
    kind = options.pop("vocoder_type", "griffin_lim")
    if kind not in VOCODER_TYPES:
        raise ValueError(f"vocoder_config names vocoder_type={kind!r}; this version knows {sorted(VOCODER_TYPES)}.")
    return VOCODER_TYPES[kind](**options)


class DiTARForTextToSpeech(DiTARForConditionalGeneration):
    r"""
    DiTAR with its vocoder: text (and a voice prompt) in, waveforms out. The class behind `AutoModelForTextToWaveform`
    and transformers' `pipeline("text-to-speech")`; it has the weights of [`DiTARForConditionalGeneration`] plus the
    vocoder described by `config.vocoder_config`, as speech models in transformers hold their codec.

    `generate` samples `num_candidates` candidates per text when the generation config asks for more than one and keeps
    the one the model's CTC head reads as the text most closely, then vocodes it.
    """

    output_modalities = ("audio",)

    def __init__(self, config: DiTARConfig):
        if config.vocoder_config is None:
            raise ValueError(
                "DiTARForTextToSpeech needs config.vocoder_config (the vocoder that turns features into audio); use "
                "DiTARForConditionalGeneration for features only, or save the model from a DiTARPipeline."
            )
        super().__init__(config)
        self.vocoder = build_vocoder(config.vocoder_config)
        # the model writes feature_dim mel bins per frame; a vocoder reading another number would fail at the first
        # generate (or, for a matrix-shaped mismatch, speak noise), so refuse the pairing when the model is built
        bins = getattr(self.vocoder, "num_mel_bins", None)
        if bins is not None and int(bins) != config.feature_dim:
            raise ValueError(
                f"config.vocoder_config describes a vocoder that reads {int(bins)} mel bins, but the model makes "
                f"config.feature_dim={config.feature_dim}: set the vocoder's num_mel_bins to {config.feature_dim} "
                "(its features must be the processor's), or use a model trained on the vocoder's features."
            )

    @property
    def sampling_rate(self) -> int:
        return int(self.vocoder.sampling_rate)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        prompt_features: torch.FloatTensor | None = None,
        prompt_attention_mask: torch.LongTensor | None = None,
        speech_position_rate: torch.FloatTensor | float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        generation_config=None,
        past_key_values=None,
        **kwargs,
    ) -> DiTARSpeechOutput:
        """Speak each row of `input_ids` (from [`DiTARProcessor`], which also prepares the voice prompt).

        Keyword arguments: DiTAR's generation settings (`num_inference_steps`, `guidance_scale`, `temperature`,
        `num_candidates`, `max_new_patches`, `stop_threshold`, ...; defaults from `generation_config`). Standard
        `GenerationConfig` flags that callers pass to every model (`max_new_tokens`, `pad_token_id`,
        `return_dict_in_generate`, ...) are accepted and have no effect: DiTAR's length is bounded by `max_new_patches`
        and the stop head. Any other keyword is an error. With inputs from `processor(text, voice=voice)`,
        `past_key_values=voice.prefix_cache(model)` also skips the prefill of the voice's transcript.
        """
        settings_kwargs = {key: kwargs.pop(key) for key in list(kwargs) if key in GENERATION_DEFAULTS}
        flags, unknown = split_generation_kwargs(kwargs)
        warn_ignored_generation_flags(flags)
        reject_unknown_kwargs(
            "generate",
            unknown,
            (
                "input_ids",
                "attention_mask",
                "prompt_features",
                "prompt_attention_mask",
                "speech_position_rate",
                "generator",
                "generation_config",
                "past_key_values",
                *GENERATION_DEFAULTS,
            ),
        )
        out = super().generate(
            input_ids,
            attention_mask=attention_mask,
            prompt_features=prompt_features,
            prompt_attention_mask=prompt_attention_mask,
            speech_position_rate=speech_position_rate,
            generator=generator,
            generation_config=generation_config,
            past_key_values=past_key_values,
            **settings_kwargs,
        )
        features = [
            self.denormalize_features(out.features[row, : int(out.lengths[row])].float()).cpu()
            for row in range(out.features.shape[0])
        ]
        # the pipeline's post-processing: the speech's spectrum moved towards its prompt's (generation settings)
        settings = self.generation_settings(generation_config, **settings_kwargs)
        message = cut_by_cap_message(out.stopped.tolist(), settings.max_new_patches)
        if message is not None:  # as DiTARPipeline warns: transformers' pipeline drops `stopped`
            logger.warning(message)
        matches = prompt_spectrum_matches(self, prompt_features, prompt_attention_mask, settings, len(features))
        features = [f if match is None else match(f) for f, match in zip(features, matches, strict=True)]
        # the pipeline's decoding: chunked Griffin-Lim and the soft limiter that keeps peaks below full scale
        audio = [StreamingVocoder(self.vocoder, limiter=soft_limit).decode(f) for f in features]
        least = self._least_seconds_at_prompt_rate(
            input_ids, attention_mask, prompt_features, prompt_attention_mask, speech_position_rate
        )
        message = too_short_message([len(a) / self.sampling_rate for a in audio], least, out.stopped.tolist())
        if message is not None:  # as DiTARPipeline warns, from the prompt's speaking rate (the text is not seen here)
            logger.warning(message)
        output = DiTARSpeechOutput(audio=audio, features=features, stopped=out.stopped.cpu())
        output._sampling_rate = self.sampling_rate
        return output

    def _least_seconds_at_prompt_rate(
        self, input_ids, attention_mask, prompt_features, prompt_attention_mask, speech_position_rate
    ) -> list[float | None]:
        """Per row, the fewest seconds its text can plausibly take: its tokens after the prompt's transcript, at the
        prompt's speaking rate (`speech_position_rate`, transcript tokens per frame), over
        `SPEAKING_RATE_SHORT_FACTOR`, less the slack; None where there is no prompt or rate to go by."""
        rows = input_ids.shape[0]
        hop = getattr(self.vocoder, "hop_length", None)
        if hop is None or prompt_features is None or speech_position_rate is None:
            return [None] * rows
        rate = torch.as_tensor(speech_position_rate, dtype=torch.float32).flatten().cpu().expand(rows)
        frames = (
            torch.as_tensor(prompt_attention_mask).sum(1).cpu().float()
            if prompt_attention_mask is not None
            else torch.full((rows,), float(prompt_features.shape[1]))
        )
        tokens = (
            torch.as_tensor(attention_mask).sum(1).cpu().float()
            if attention_mask is not None
            else torch.full((rows,), float(input_ids.shape[1]))
        )
        target = tokens_after_prompt(tokens, frames, rate).clamp(min=0)
        seconds = target / rate.clamp(min=1e-6) * hop / self.sampling_rate
        least = seconds / SPEAKING_RATE_SHORT_FACTOR - SHORT_SPEECH_SLACK_SECONDS
        return [float(x) if r > 0 else None for x, r in zip(least.tolist(), rate.tolist(), strict=True)]


def tokens_after_prompt(text_lengths: torch.Tensor, prompt_frames: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """Per row, the text tokens that follow the voice prompt's transcript: a row's tokens less those its prompt of
    `prompt_frames` frames speaks at its speaking `rate` (transcript tokens per frame), which estimates the
    transcript's length (the processor joins transcript and text in one row)."""
    return text_lengths - (rate * prompt_frames).round()


def _locdit_forward_prepared(locdit: LocDiT, noisy: torch.Tensor, time_emb: torch.Tensor, context) -> torch.Tensor:
    return locdit(noisy, time_emb=time_emb, context=context)


class _CompiledLocDiTStep:
    """`torch.compile`d `LocDiT.forward_prepared` that falls back to eager (once, with a warning) if compiling fails."""

    def __init__(self, mode: str | None, dynamic: bool | None):
        self.failed = False
        try:
            self.compiled = torch.compile(_locdit_forward_prepared, mode=mode, dynamic=dynamic)
        except Exception as error:  # noqa: BLE001 - e.g. an unsupported platform or Python version
            self._fail(error)

    def _fail(self, error: Exception):
        self.failed = True
        logger.warning(
            f"torch.compile of LocDiT is not available ({type(error).__name__}: {error}); generating eagerly."
        )

    def __call__(self, locdit: LocDiT, noisy: torch.Tensor, time_emb: torch.Tensor, context) -> torch.Tensor:
        if self.failed:
            return locdit(noisy, time_emb=time_emb, context=context)
        try:
            return self.compiled(locdit, noisy, time_emb, context)
        except torch.OutOfMemoryError:
            raise  # the device's memory, not the compiler: compiling stays on for the next call
        except Exception as error:  # noqa: BLE001 - compiler errors come in many types
            # eager raises what is not the compiler's fault (then compiling stays on); a step it runs was the compiler's
            out = locdit(noisy, time_emb=time_emb, context=context)
            self._fail(error)
            return out


def _cache_rows(cache) -> int:
    """Batch size of a filled KV cache (`Cache.batch_size` is not set for every layer type)."""
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        if isinstance(keys, torch.Tensor) and keys.dim() == 4:
            return int(keys.shape[0])
    raise ValueError("past_key_values holds no keys; build it with text_prefix_cache or DiTARVoice.prefix_cache.")


def _same_prefix_per_candidate(cache, candidates: int, *prefix: torch.Tensor) -> bool:
    """Whether every group of `candidates` consecutive rows has one prefix (each of `prefix`: embeddings, mask,
    positions, batch first), so that the prefill can run once per group and a dynamic `cache` repeat it."""
    return cache is not None and _cache_can_select_rows(cache) and _repeated_per_candidate(candidates, *prefix)


def _cache_repeated_per_candidate(cache, candidates: int) -> bool:
    """Whether every group of `candidates` consecutive rows of a filled KV cache holds the same keys and values."""
    tensors = [
        tensor
        for layer in cache.layers
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None))
        if isinstance(tensor, torch.Tensor) and tensor.dim() == 4
    ]
    return bool(tensors) and _repeated_per_candidate(candidates, *tensors)


def _repeated_per_candidate(candidates: int, *tensors: torch.Tensor) -> bool:
    """Whether every group of `candidates` consecutive rows (batch first) of each tensor is one row repeated, as
    generate() lays out a text's candidates."""
    if candidates <= 1:
        return False
    for tensor in tensors:
        grouped = tensor.reshape(-1, candidates, *tensor.shape[1:])
        if not bool((grouped == grouped[:, :1]).all()):
            return False
    return True


def _cache_can_select_rows(cache) -> bool:
    """Whether `cache.batch_select_indices` really drops rows (dynamic layers do; static and stub layers do not)."""
    layers = getattr(cache, "layers", None)
    return isinstance(cache, DynamicCache) and bool(layers) and all(isinstance(layer, DynamicLayer) for layer in layers)


def _check_rows_not_empty(mask: torch.Tensor | None, name: str, what: str) -> None:
    """Raise a ValueError when a row of `mask` has no valid position (its loss or output would be meaningless)."""
    if mask is None:
        return
    empty = (mask.long().sum(-1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"{name} row {empty[0]} has {what} (a mask with no valid position).")


def _check_finite(values: torch.Tensor, name: str, mask: torch.Tensor | None = None) -> None:
    """Raise a ValueError naming `name` when its (valid) values hold NaN or Inf."""
    bad = ~torch.isfinite(values)
    if mask is not None:
        bad = bad & mask.bool()[..., None]
    if bool(bad.any()):
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or Inf values; clean the features (or the audio they came from)."
        )


def _resized_ctc_head(head: nn.Linear, frames: int, vocab: int, mean_resizing: bool, std: float) -> nn.Linear:
    """`head` (`frames` blocks of token classes + a last blank class) for a vocabulary of `vocab` tokens: each block
    keeps the rows of the tokens that remain and its blank row last; added tokens get the block's mean token row
    (`mean_resizing`) or normal(0, `std`) weights and a zero bias, as a fresh head would."""
    hidden, old = head.in_features, head.out_features // frames - 1
    keep = min(old, vocab)
    with torch.no_grad():
        weight = head.weight.view(frames, old + 1, hidden)
        bias = head.bias.view(frames, old + 1) if head.bias is not None else None
        new_weight = weight.new_empty(frames, vocab + 1, hidden)
        new_weight[:, :keep], new_weight[:, -1] = weight[:, :keep], weight[:, -1]
        if vocab > old:
            if mean_resizing:
                new_weight[:, old:vocab] = weight[:, :old].float().mean(1, keepdim=True).to(weight.dtype)
            else:
                new_weight[:, old:vocab].normal_(0.0, std)
        resized = nn.Linear(
            hidden, frames * (vocab + 1), bias=bias is not None, device=weight.device, dtype=weight.dtype
        )
        resized.weight.copy_(new_weight.reshape(-1, hidden))
        if bias is not None:
            new_bias = bias.new_zeros(frames, vocab + 1)
            new_bias[:, :keep], new_bias[:, -1] = bias[:, :keep], bias[:, -1]
            if vocab > old and mean_resizing:
                new_bias[:, old:vocab] = bias[:, :old].float().mean(1, keepdim=True).to(bias.dtype)
            resized.bias.copy_(new_bias.reshape(-1))
    resized.requires_grad_(head.weight.requires_grad)
    return resized


def check_finite_parameters(model: nn.Module, source: str) -> None:
    """Raise a ValueError naming `source` (the weight file or folder) when a parameter or buffer of `model` holds NaN
    or Inf (a corrupt or diverged checkpoint would otherwise load silently and speak noise or nothing). Weights on
    the meta device (offloaded to disk by `device_map`) hold no values here and are skipped."""
    with torch.no_grad():
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
            if tensor.is_meta or not tensor.is_floating_point() or not tensor.numel():
                continue
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(
                    f"the weights loaded from {source} hold NaN or Inf values (first in {name!r}); the checkpoint is "
                    "corrupt or its training diverged: load an earlier checkpoint."
                )


def check_weights_in_memory(model: nn.Module) -> None:
    """Refuse to generate with weights on the meta device. Generation reads LocDiT's and the heads' weights directly,
    outside the modules' forward calls, where accelerate's offload hooks (disk offload by `device_map`,
    `accelerate.cpu_offload`) would bring them in, so it would fail deep inside torch instead."""
    weights = itertools.chain(model.named_parameters(), model.named_buffers())
    on_meta = [name for name, tensor in weights if tensor.is_meta]
    if on_meta:
        raise RuntimeError(
            f"{len(on_meta)} of the model's weights are not in memory (on the meta device, first {on_meta[0]!r}): "
            "they were offloaded, by from_pretrained with a device_map and too little max_memory (disk offload), by "
            "accelerate.cpu_offload or by .to('meta'), and DiTAR's generation cannot bring offloaded weights in. Load "
            "the model without disk offload (no device_map, or a max_memory that holds the whole model); to keep the "
            "accelerator's memory free between calls, use DiTARPipeline's pipe.enable_model_cpu_offload() instead."
        )


def _weights_source(name_or_path, subfolder: str | None = None) -> str:
    """The weight file(s) a model was loaded from, for error messages: the folder's safetensors file or index when it
    is local, else the repo id."""
    folder = os.path.join(os.fspath(name_or_path), subfolder or "")
    for candidate in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        if os.path.isfile(os.path.join(folder, candidate)):
            return os.path.join(folder, candidate)
    return os.fspath(name_or_path) + (f" ({subfolder})" if subfolder else "")


def _check_right_padded(mask: torch.Tensor | None, name: str):
    """Frame masks must hold each row's real frames first (right padding): patches are cut from the start."""
    if mask is None:
        return
    lengths = mask.long().sum(1, keepdim=True)
    expected = torch.arange(mask.shape[1], device=mask.device)[None] < lengths
    if not bool((mask.bool() == expected).all()):
        raise ValueError(f"{name} must be right-padded (real frames first, then zeros); pad frames at the end.")


@functools.cache
def _cache_argument_name(backbone_class: type) -> str:
    parameters = inspect.signature(backbone_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _shape(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__}"


__all__ = [
    "DiTARPreTrainedModel",
    "DiTARForConditionalGeneration",
    "DiTAROutput",
    "DiTARGenerationOutput",
    "PatchStep",
    "GenerationSpeedups",
]
