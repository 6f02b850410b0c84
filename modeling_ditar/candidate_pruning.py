"""Best-of-K candidates with early pruning: the pieces that generation, the pipeline and streaming share.

With `num_candidates` K > 1 every text is sampled K times, as K consecutive rows of one batch. The model's CTC head
judges them:

- **Pruning** (`candidate_prune_after_patches` N): after N patches, each text whose K candidates are all still running
  keeps only the one whose speech so far best matches *a prefix* of its text (`prefix_ctc_loss`); the others leave
  the batch and its KV cache, so the rest of the text costs one candidate.
- **Early pruning** (`candidate_early_prune_after_patches` E < N, `candidate_early_prune_margin` m): after E patches a
  text already keeps its best candidate when the runner-up's prefix score is worse by at least m. Where the
  candidates are that close the first patches cannot tell them apart yet, and the text waits for N.
- **Ranking**: candidates still in the running at the end (all K without pruning, or where a candidate finished
  before the pruning point) are scored whole (`DiTARForConditionalGeneration.score_candidates`) and the best is kept.
- **Shared start** (`candidate_shared_patches` S): the K candidates of a text take the same draws for their first S
  patches, so they begin alike and branch after them.

One-shot generation and streaming apply the same policy to the same rows, so they keep the same candidate: streaming
plays the patches all K candidates share as they come, buffers the rest until only one candidate is left (the pruning
point, or the end without pruning) and then plays it (`CandidateFollower`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def prefix_ctc_loss(
    log_probs: torch.Tensor,
    input_lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC negative log-likelihood of the best *prefix* of each target: speech that has said only the start of its
    text so far aligns with `targets[b, :m]` for some m, and the alignment may end anywhere in the text.

    Args:
        log_probs: [B, T, C] log-softmax outputs per frame.
        input_lengths: [B] valid frames per row.
        targets: [B, L] label ids (padding after `target_lengths` is ignored); no label equals `blank`.
        target_lengths: [B] labels per row.
        blank: the blank class.

    Returns:
        nll [B]: min over m in 0..target_lengths of -log p(targets[:m] | log_probs[:input_lengths]) (the sum over all
        frame paths that collapse to exactly that prefix; `inf` for a row without frames), and
        prefix_lengths [B]: the m that attains it.
    """
    if log_probs.dim() != 3 or targets.dim() != 2 or log_probs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"prefix_ctc_loss takes log_probs [B, T, C] and targets [B, L], got {tuple(log_probs.shape)} and "
            f"{tuple(targets.shape)}."
        )
    batch, frames, _ = log_probs.shape
    device, neg = log_probs.device, float("-inf")
    states = 2 * targets.shape[1] + 1
    # extended labels: blank, y1, blank, y2, ..., yL, blank; state 2m is "blank after y_m", 2m - 1 is "on y_m"
    extended = torch.full((batch, states), blank, dtype=torch.long, device=device)
    extended[:, 1::2] = targets.long()
    emit = log_probs.float().gather(2, extended[:, None, :].expand(batch, frames, states))  # [B, T, S]
    # a label may follow the label before the previous blank directly unless it repeats it
    can_skip = torch.zeros(batch, states, dtype=torch.bool, device=device)
    can_skip[:, 2:] = (extended[:, 2:] != blank) & (extended[:, 2:] != extended[:, :-2])
    alpha = torch.full((batch, states), neg, device=device)
    if frames > 0:
        alpha[:, :2] = emit[:, 0, :2]
    lengths = input_lengths.to(device)
    for t in range(1, frames):
        stay = alpha
        step = torch.nn.functional.pad(alpha[:, :-1], (1, 0), value=neg)
        skip = torch.nn.functional.pad(alpha[:, :-2], (2, 0), value=neg).masked_fill(~can_skip, neg)
        moved = torch.logsumexp(torch.stack([stay, step, skip]), dim=0) + emit[:, t]
        alpha = torch.where((t < lengths)[:, None], moved, alpha)  # shorter rows keep their last column
    # p(prefix m) = alpha(2m) + alpha(2m - 1); m = 0 is the all-blank path
    on_label = torch.nn.functional.pad(alpha[:, 1::2], (1, 0), value=neg)
    prefix = torch.logaddexp(alpha[:, 0::2], on_label)  # [B, L + 1]
    too_long = torch.arange(prefix.shape[1], device=device)[None] > target_lengths.to(device)[:, None]
    prefix = prefix.masked_fill(too_long | (lengths <= 0)[:, None], neg)
    best, prefix_lengths = prefix.max(dim=1)
    return -best, prefix_lengths


def select_rows(inputs: dict, index: list[int]) -> dict:
    """The generation inputs (`input_ids`, `attention_mask`, `prompt_features`, ...) of rows `index`; 0-d tensors and
    other values (one speaking rate for every row) are shared."""
    return {
        key: value[index] if isinstance(value, torch.Tensor) and value.dim() else value for key, value in inputs.items()
    }


def losing_candidates(
    scores: torch.Tensor, finished: torch.Tensor, num_candidates: int, margin: float | None = None
) -> torch.Tensor:
    """Rows to drop at the pruning point: [B*K] bool.

    `scores` [B*K] are every row's `transcript_prefix_ctc_loss` of the speech so far (generation reads them from its
    own backbone states; `score_candidates(..., prefix=True)` computes them from patches) and `finished` [B*K] the rows
    that have already finished. For each text whose K candidates are all still running, every candidate except the one
    with the lowest score is dropped (ties keep the first). A text with a finished candidate keeps all K: its
    candidates are ranked whole at the end. With `margin` (an early pruning point), only texts whose runner-up scores
    worse than the best by at least `margin` are decided; the others keep all K."""
    running = ~finished.view(-1, num_candidates).any(1)  # [B]
    dropped = torch.zeros_like(finished)
    if not bool(running.any()):
        return dropped
    texts = running.nonzero().flatten().tolist()
    index = [text * num_candidates + k for text in texts for k in range(num_candidates)]
    grouped = scores[index].view(len(texts), num_candidates)
    best = grouped.argmin(1).tolist()
    if margin is not None:
        ranked = grouped.sort(1).values
        decided = ((ranked[:, 1] - ranked[:, 0]) >= margin).tolist()
    else:
        decided = [True] * len(texts)
    for text, keep, decide in zip(texts, best, decided, strict=True):
        if not decide:
            continue
        rows = [text * num_candidates + k for k in range(num_candidates) if k != keep]
        dropped[rows] = True
    return dropped


def choose_candidates(
    model, inputs: dict, rows: list[torch.Tensor], num_candidates: int, dropped: torch.Tensor | None = None
) -> list[int]:
    """The row kept for each text: its only candidate left after pruning, else the lowest `score_candidates` among
    those still in the running. `rows` are the generated features (normalised, [T_i, D]) of all B*K rows, in the
    order of `inputs`; `dropped` [B*K] marks the rows pruning dropped (None: none)."""
    texts = len(rows) // num_candidates
    dropped = [False] * len(rows) if dropped is None else [bool(d) for d in dropped.tolist()]
    chosen = []
    for text in range(texts):
        group = [text * num_candidates + k for k in range(num_candidates) if not dropped[text * num_candidates + k]]
        if len(group) == 1:
            chosen.append(group[0])
            continue
        scores = model.score_candidates(select_rows(inputs, group), [rows[row] for row in group])
        chosen.append(group[int(scores.argmin())])
    return chosen


class CandidateFollower:
    """Follows the K candidates of one text through `generate_patches`' steps for streaming, and hands out the patches
    of the candidate that is kept as soon as it is known: at the pruning point, or after ranking at the end.

    `choose(rows, dropped)` returns the kept row given every row's features ([T_i, D] normalised) and the rows pruning
    dropped ([K] bool or None), as `choose_candidates` does for one text; it is called only when more than one
    candidate is still in the running at the end.

    Patches that every candidate has, equal to the last bit, are handed out at once, whichever candidate is kept
    (the setting `candidate_shared_patches` makes the first ones so)."""

    def __init__(self, num_candidates: int, choose: Callable[[list[torch.Tensor], torch.Tensor | None], int]):
        self.num_candidates = num_candidates
        self.choose = choose
        self.kept: int | None = 0 if num_candidates == 1 else None
        self.stopped = False
        self._buffers: list[list[torch.Tensor]] = [[] for _ in range(num_candidates)]
        self._handed_out = 0  # leading patches of every buffer already handed out (the same in every candidate)
        self._agreeing = True  # every candidate's patches have been the same so far

    def push(self, step) -> list[torch.Tensor]:
        """The kept candidate's patches ([P, D] each, normalised) that this step makes known: while several candidates
        are in the running, only a patch that all of them share."""
        if self.kept is not None:
            self.stopped = bool(step.stopped[self.kept])
            return [step.patch[self.kept]] if bool(step.active[self.kept]) else []
        for row in range(self.num_candidates):
            if bool(step.active[row]):
                self._buffers[row].append(step.patch[row])
        self._last = step
        survivors = self._survivors(step)
        if len(survivors) > 1:
            return self._shared_patch(step)
        self.kept = survivors[0]
        self.stopped = bool(step.stopped[self.kept])
        return self._take(self.kept)

    def _shared_patch(self, step) -> list[torch.Tensor]:
        """This step's patch when every candidate made it and all of them are equal so far (else nothing, from then on:
        the candidates have branched)."""
        if self._agreeing:
            patch = step.patch[0]
            self._agreeing = bool(step.active.all()) and all(
                torch.equal(step.patch[row], patch) for row in range(1, self.num_candidates)
            )
        if not self._agreeing:
            return []
        self._handed_out += 1
        return [patch]

    def finish(self) -> list[torch.Tensor]:
        """The kept candidate's remaining patches once the steps are over (ranking the candidates left, if several)."""
        if self.kept is not None:
            return []
        rows = [torch.stack(patches).flatten(0, 1) for patches in self._buffers]  # every row has at least one patch
        self.kept = self.choose(rows, self._last.dropped)
        self.stopped = bool(self._last.stopped[self.kept])
        return self._take(self.kept)

    def _survivors(self, step) -> list[int]:
        dropped = getattr(step, "dropped", None)
        return [row for row in range(self.num_candidates) if dropped is None or not bool(dropped[row])]

    def _take(self, row: int) -> list[torch.Tensor]:
        patches, self._buffers = self._buffers[row][self._handed_out :], []
        return patches
