r"""Would a stronger CTC head on the frozen backbone judge best-of-K candidates better than the default's own?

The default ranks candidates with its CTC head: one linear layer on each backbone output, trained as a small auxiliary
loss. This probe trains a new head on the frozen backbone's outputs over training-legal speech (the outputs are
computed once, so training costs only the head): either that linear layer trained further on the natural-voice corpus,
or bidirectional transformer layers in front of it that see the whole utterance. The layers start as the identity
(their output projections zeroed), so the new head starts exactly as the default's and training can only move it by
what the corpus teaches. Then it ranks the candidates `candidate_ranking_probe.py --save-candidates` wrote.

    # 1. backbone outputs of a corpus split (each utterance after another of its speaker, as a prompt precedes a text)
    python examples/research/judge_head_probe.py collect --corpus data/cpu_natural_corpus --split train \
        --out outputs/judge/states-train.pt
    python examples/research/judge_head_probe.py collect --corpus data/cpu_natural_corpus --split validation \
        --out outputs/judge/states-validation.pt
    # 2. a head (prints its validation loss and token error rate next to the default head's)
    python examples/research/judge_head_probe.py train --train outputs/judge/states-train.pt \
        --validation outputs/judge/states-validation.pt --layers 2 --minutes 20 --out outputs/judge/head-2.pt
    # 3. which candidate it keeps
    python examples/research/judge_head_probe.py rank outputs/eval/candidates-natval48 --head outputs/judge/head-2.pt

A probe, not part of the package: the head is not saved with any pipeline.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

EXAMPLES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLES))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_lib.metrics import edit_distance  # noqa: E402
from judge_table import oracle_pick, rank_sum_pick, ranks, selection_table  # noqa: E402


class JudgeHead(nn.Module):
    """`layers` pre-norm bidirectional transformer layers (residual, starting as the identity) in front of a copy of
    the model's CTC head: backbone outputs [B, N, H] -> per-patch CTC logits [B, N, F * C], as `ctc_head` maps them."""

    def __init__(self, ctc_head: nn.Linear, layers: int = 2, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        width = ctc_head.in_features
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width, heads, 4 * width, dropout=dropout, batch_first=True, norm_first=True, activation="gelu"
            )
            for _ in range(layers)
        )
        for block in self.blocks:  # each block adds nothing until trained
            for linear in (block.self_attn.out_proj, block.linear2):
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)
        self.out = copy.deepcopy(ctc_head).float()

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = hidden.float()
        for block in self.blocks:
            x = block(x, src_key_padding_mask=None if mask is None else ~mask.bool())
        return self.out(x)


# ----------------------------------------------------------------------------------------------------------------------
# 1. backbone outputs


@torch.no_grad()
def collect(pipe, utterances, pairs, pad_id: int, space_ids, batch_size: int = 16) -> list[dict]:
    """Per (utterance, prompt partner) pair: the backbone outputs the CTC head reads ([N, H], float16) and the text's
    token ids, as `transcript_ctc_loss` computes them."""
    from modeling_ditar.training_data import collate_examples

    model = pipe.model.eval()
    examples = []
    for start in range(0, len(pairs), batch_size):
        batch = collate_examples(pairs[start : start + batch_size], utterances, pad_id, space_ids)
        text_mask, speech = model._transcript_speech_pass(
            batch["input_ids"],
            batch["speech_features"].to(model.dtype),
            batch["attention_mask"],
            batch["speech_attention_mask"],
            batch["speech_position_rate"],
        )
        hidden = model._ctc_hidden(speech.hidden)
        for row, (index, _) in enumerate(pairs[start : start + batch_size]):
            examples.append(
                {
                    "hidden": hidden[row, : int(speech.num_patches[row])].half().clone(),
                    "targets": batch["input_ids"][row][text_mask[row].bool()].clone(),
                    "speaker": utterances[index].speaker,
                }
            )
    return examples


def collect_command(args) -> None:
    from datasets import load_from_disk
    from distill_locdit import prompt_partner, speakers_index
    from eval_lib.systems import load_pipeline
    from train import load_utterances

    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.pipeline)
    split = load_from_disk(args.corpus)[args.split]
    if args.max_utterances:
        split = split.select(range(min(args.max_utterances, len(split))))
    utterances = load_utterances(split, pipe.processor, pipe.model)
    by_speaker, rng = speakers_index(utterances), random.Random(args.seed)
    pairs = [(i, prompt_partner(i, utterances, by_speaker, rng, 1.0)) for i in range(len(utterances))]
    start = time.perf_counter()
    pad_id = pipe.processor.tokenizer.pad_token_id or 0
    examples = collect(pipe, utterances, pairs, pad_id, pipe.processor.encode_text(" ", allow_empty=True))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"corpus": args.corpus, "split": args.split, "examples": examples}, args.out)
    print(f"{len(examples)} examples from {args.corpus} [{args.split}] in {time.perf_counter() - start:.0f} s")


# ----------------------------------------------------------------------------------------------------------------------
# 2. the head


def ctc_batch(head: JudgeHead, examples: list[dict], frames_per_patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(CTC negative log-likelihood per row [B], log-probabilities [B, N*F, C]) of a batch of examples. The loss is the
    model's `_ctc_loss`, written out because that calls its head without a padding mask, which the bidirectional
    layers need on padded batches."""
    hidden = nn.utils.rnn.pad_sequence([e["hidden"].float() for e in examples], batch_first=True)
    lengths = torch.tensor([len(e["hidden"]) for e in examples])
    mask = torch.arange(hidden.shape[1])[None] < lengths[:, None]
    logits = head(hidden, mask)
    batch, num, _ = logits.shape
    log_probs = logits.view(batch, num * frames_per_patch, -1).log_softmax(-1)
    nll = F.ctc_loss(
        log_probs.transpose(0, 1),
        torch.cat([e["targets"] for e in examples]),
        input_lengths=lengths * frames_per_patch,
        target_lengths=torch.tensor([len(e["targets"]) for e in examples]),
        blank=log_probs.shape[-1] - 1,
        reduction="none",
        zero_infinity=True,
    )
    return nll, log_probs


@torch.no_grad()
def evaluate_head(head: JudgeHead, examples: list[dict], frames_per_patch: int) -> dict:
    """Mean CTC loss per text token and the greedy decoding's token error rate."""
    head.eval()
    nll_sum = tokens = errors = 0
    for start in range(0, len(examples), 32):
        chunk = examples[start : start + 32]
        nll, log_probs = ctc_batch(head, chunk, frames_per_patch)
        blank = log_probs.shape[-1] - 1
        for row, example in enumerate(chunk):
            best = log_probs[row, : len(example["hidden"]) * frames_per_patch].argmax(-1).tolist()
            decoded = [t for k, t in enumerate(best) if t != blank and (k == 0 or t != best[k - 1])]
            errors += edit_distance(decoded, example["targets"].tolist())
        nll_sum += float(nll.sum())
        tokens += sum(len(e["targets"]) for e in chunk)
    head.train()
    return {"loss_per_token": nll_sum / tokens, "token_error_rate": errors / tokens}


def train_command(args) -> None:
    from eval_lib.systems import load_pipeline

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = load_pipeline(args.pipeline).model
    frames = model.config.ctc_frames_per_patch
    train = torch.load(args.train)["examples"]
    validation = torch.load(args.validation)["examples"]
    head = JudgeHead(model.ctc_head, layers=args.layers)
    first = evaluate_head(head, validation, frames)
    print(f"default head on validation: {first}", flush=True)
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.learning_rate, weight_decay=0.01)
    rng = random.Random(args.seed)
    best, best_state, step, start, last_check = first, copy.deepcopy(head.state_dict()), 0, time.perf_counter(), 0.0
    while time.perf_counter() - start < args.minutes * 60:
        order = list(range(len(train)))
        rng.shuffle(order)
        for begin in range(0, len(order), args.batch_size):
            batch = [train[i] for i in order[begin : begin + args.batch_size]]
            nll, _ = ctc_batch(head, batch, frames)
            loss = (nll / torch.tensor([len(e["targets"]) for e in batch])).mean()
            warmup = min(1.0, (step + 1) / 100)
            for group in optimizer.param_groups:
                group["lr"] = args.learning_rate * warmup
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            optimizer.step()
            step += 1
            elapsed = time.perf_counter() - start
            if elapsed - last_check > args.check_seconds or elapsed > args.minutes * 60:
                last_check = elapsed
                metrics = evaluate_head(head, validation, frames)
                kept = metrics["loss_per_token"] < best["loss_per_token"]
                if kept:
                    best, best_state = metrics, copy.deepcopy(head.state_dict())
                print(
                    f"step {step} ({elapsed:.0f} s): train {loss.item():.3f}, validation {metrics}"
                    f"{' (best)' if kept else ''}",
                    flush=True,
                )
            if elapsed > args.minutes * 60:
                break
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"layers": args.layers, "state": best_state, "validation": best, "default": first, "steps": step}, args.out
    )
    print(f"kept: {best} (default head: {first}); {step} steps -> {args.out}")


# ----------------------------------------------------------------------------------------------------------------------
# 3. ranking


def load_head(path, model) -> JudgeHead:
    saved = torch.load(path)
    head = JudgeHead(model.ctc_head, layers=saved["layers"])
    head.load_state_dict(saved["state"])
    return head.eval()


@torch.no_grad()
def judge_scores(pipe, head: nn.Module, case, features: list[torch.Tensor]) -> list[float]:
    """`score_candidates` of each candidate (de-normalised features [T, D]) with `head` as the model's CTC head."""
    model = pipe.model
    inputs = pipe.encode_inputs([case.target_text], case.prompt_audio, case.prompt_text, None)
    default_head, model.ctc_head = model.ctc_head, head
    try:
        return [float(model.score_candidates(inputs, [model.normalize_features(f)])[0]) for f in features]
    finally:
        model.ctc_head = default_head


def picks(candidates: list[dict]) -> dict[str, int]:
    ctc, judge = [c["ctc"] for c in candidates], [c["judge"] for c in candidates]
    return {
        "seed 0": 0,
        "CTC head": ranks(ctc).index(0),
        "new head": ranks(judge).index(0),
        "CTC head + new head (rank sum)": rank_sum_pick(ctc, judge),
        "oracle": oracle_pick(candidates),
    }


def rank_command(args) -> None:
    from eval_lib.cases import load_cases
    from eval_lib.systems import load_pipeline

    torch.set_num_threads(args.threads)
    folder = Path(args.probe)
    if not (folder / "candidates").is_dir():
        raise SystemExit(f"{folder}/candidates is missing: run candidate_ranking_probe.py with --save-candidates")
    data = json.loads((folder / "candidates.json").read_text())
    cases = {case.id: case for case in load_cases(data["meta"]["cases"])}
    pipe = load_pipeline(args.pipeline)
    pipe.model.eval()
    head = load_head(args.head, pipe.model)
    records = data["cases"]
    for record in records:
        features = [torch.load(folder / "candidates" / f"{record['id']}_{c['seed']}.pt") for c in record["candidates"]]
        for cand, score in zip(
            record["candidates"], judge_scores(pipe, head, cases[record["id"]], features), strict=True
        ):
            cand["judge"] = score
    table = selection_table(records, picks)
    text = f"# A new CTC head as the judge, {len(records)} cases\n\n`python {' '.join(sys.argv)}`\n\n{table}"
    Path(args.out or folder / f"judge_head_{Path(args.head).stem}.md").write_text(text)
    print(text)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="backbone outputs of a corpus split")
    c.add_argument("--corpus", required=True)
    c.add_argument("--split", default="train")
    c.add_argument("--max-utterances", type=int, default=None)
    c.add_argument("--out", required=True)
    t = sub.add_parser("train", help="train a head on collected outputs")
    t.add_argument("--train", required=True)
    t.add_argument("--validation", required=True)
    t.add_argument("--layers", type=int, default=2, help="transformer layers before the linear head (0: linear only)")
    t.add_argument("--minutes", type=float, default=20)
    t.add_argument("--learning-rate", type=float, default=3e-4)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--check-seconds", type=float, default=120, help="validate every this many seconds")
    t.add_argument("--out", required=True)
    r = sub.add_parser("rank", help="rank the saved candidates of a ranking-probe folder")
    r.add_argument("probe")
    r.add_argument("--head", required=True)
    r.add_argument("--out", default=None, help="markdown summary (default: PROBE/judge_head_<head>.md)")
    for sp in (c, t, r):
        sp.add_argument("--pipeline", default=None, help="pipeline folder (default: the embedded default)")
        sp.add_argument("--threads", type=int, default=2)
        sp.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    {"collect": collect_command, "train": train_command, "rank": rank_command}[args.command](args)


if __name__ == "__main__":
    main()
