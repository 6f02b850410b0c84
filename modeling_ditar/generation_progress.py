"""One progress bar per pipeline call, counting real work: generated patches (one per generation step of a batch, so
the rows and candidates of a batch move together), across every sentence segment of a long text.

The total is an estimate: the patches the text should take at the prompt's speaking rate (its transcript's tokens per
frame), never more than the patch cap; segments not yet encoded are estimated from their length in characters at the
rate learnt on the ones before. When a segment stops, its estimate is replaced by its real count, and when the call
ends the total is the real count, so the bar ends at 100%. The bar is the pipeline's `progress_bar`, so
`pipe.set_progress_bar_config(disable=True)` (or any other tqdm setting) applies.

A call (or a stream) makes its bar and hands it down to where its patches are counted; nothing of it is kept on the
pipeline, so calls from several threads, a call made between a stream's chunks and streams iterated side by side each
count only their own patches.
"""

from __future__ import annotations

import math

import torch


def expected_patches(model, inputs: dict, settings) -> int:
    """Patches a batch is expected to generate: its longest row's text at the prompt's speaking rate, within the cap
    of the call's resolved generation `settings` (the generation config alone may hold settings the call overrides)."""
    tokens = inputs["attention_mask"].sum(1).float().cpu()
    if settings.max_new_patches is not None:
        cap = torch.full_like(tokens, float(settings.max_new_patches))
    else:
        cap = model.default_max_new_patches(tokens.long(), settings).float()
    rate = inputs.get("speech_position_rate")
    prompt_mask = inputs.get("prompt_attention_mask")
    if rate is None or prompt_mask is None or not bool((rate > 0).all()):
        return max(1, int(cap.max()))
    rate = rate.float().cpu()
    prompt_tokens = (rate * prompt_mask.sum(1).float().cpu()).round()
    text_tokens = (tokens - prompt_tokens - 1).clamp(min=1.0)  # the separator between transcript and text
    expected = (text_tokens / rate / model.config.patch_size).ceil()
    return max(1, int(torch.minimum(expected, cap).max()))


class GenerationProgress:
    """The progress bar of one call; `segment_chars` lists, in generation order, the length of every batch that will be
    generated (one entry per sentence segment; one for a batch generated at once)."""

    def __init__(self, pipe, segment_chars: list[int]):
        self.pipe = pipe
        self.pending = [max(1, int(c)) for c in segment_chars]
        self.bar = None
        self.finished = 0  # patches of the segments already done
        self.current = 0  # patches of the segment being generated
        self.current_expected = 0
        self.learnt_patches = 0
        self.learnt_chars = 0

    def start_segment(self, inputs: dict, settings) -> None:
        expected = expected_patches(self.pipe.model, inputs, settings)
        if self.pending:
            self.learnt_chars += self.pending.pop(0)
            self.learnt_patches += expected
        self.current, self.current_expected = 0, expected
        self._set_total()

    def update(self) -> None:
        self.current += 1
        if self.current > self.current_expected:  # longer than estimated: the estimate follows
            self.current_expected = self.current
            self._set_total()
        self.bar.update()

    def end_segment(self) -> None:
        self.finished += self.current
        self.current = self.current_expected = 0
        self._set_total()

    def close(self) -> None:
        if self.bar is None:
            return
        self.pending = []
        self.finished += self.current
        self.current = self.current_expected = 0
        self._set_total()
        self.bar.close()

    def _set_total(self) -> None:
        rest = 0
        if self.pending and self.learnt_chars:
            rest = math.ceil(sum(self.pending) * self.learnt_patches / self.learnt_chars)
        total = max(1, self.finished + max(self.current_expected, self.current) + rest)
        if self.bar is None:
            self.bar = self.pipe.progress_bar(total=total)
        elif self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()
