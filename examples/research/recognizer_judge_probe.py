r"""Could a text-blind judge rank best-of-K candidates better than the model's own CTC head?

The CTC head reads the backbone, which has seen the text, so it ranks generated speech partly by the text itself.
This probe trains a small phoneme recogniser on the training corpus's speech alone (random espeak-ng voices only:
log-mel features -> CTC over the DiTAR tokenizer's IPA characters). It then asks which of the candidates of
`candidate_ranking_probe.py` that recogniser would keep.

    # 1. the recogniser (~25 min on 2 CPU cores); prints its phoneme error rate on the corpus's validation voices
    python examples/research/recognizer_judge_probe.py train --corpus data/corpus --minutes 25 \
        --out outputs/judge/recognizer.pt
    # 2. the candidates' features (the probe's seeds) and their ranking, against the probe's Whisper counts
    python examples/research/recognizer_judge_probe.py rank --cases data/eval/newvoices48/cases.jsonl \
        --probe outputs/eval/candidates-newvoices48/candidates.json --recognizer outputs/judge/recognizer.pt

A probe, not part of the package: the recogniser is not saved with any pipeline.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/

DEFAULT_PROCESSOR = Path(__file__).resolve().parents[2] / "modeling_ditar" / "default" / "processor"


class PhonemeRecognizer(nn.Module):
    """log-mel [B, T, D] -> CTC logits [B, ceil(T/2), vocab + 1] (blank last): two convolutions (the second halves the
    frame rate to 25 per second), a depthwise convolutional position signal and a small pre-norm transformer."""

    def __init__(self, feature_dim: int, vocab_size: int, width: int = 144, layers: int = 3, heads: int = 4):
        super().__init__()
        self.subsample = nn.Sequential(
            nn.Conv1d(feature_dim, width, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.position = nn.Conv1d(width, width, 15, padding=7, groups=width)
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.1, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab_size + 1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.subsample(features.transpose(1, 2))
        h = (h + self.position(h)).transpose(1, 2)
        mask = mask[:, ::2][:, : h.shape[1]]
        h = self.encoder(h, src_key_padding_mask=~mask)
        return self.out(self.norm(h)), mask

    def nll_per_token(self, features: torch.Tensor, token_ids: list[int]) -> float:
        """CTC negative log-likelihood of one token sequence given one utterance's normalised features [T, D]."""
        logits, mask = self(features[None], torch.ones(1, features.shape[0], dtype=torch.bool))
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)
        nll = F.ctc_loss(
            log_probs,
            torch.tensor([token_ids]),
            mask.sum(1),
            torch.tensor([len(token_ids)]),
            blank=logits.shape[-1] - 1,
            reduction="sum",
        )
        return float(nll) / max(1, len(token_ids))


def load_processor():
    from modeling_ditar import DiTARProcessor

    return DiTARProcessor.from_pretrained(str(DEFAULT_PROCESSOR))


def normaliser(processor):
    fe = processor.feature_extractor
    mean = torch.tensor(fe.feature_mean, dtype=torch.float32)
    std = torch.tensor(fe.feature_std, dtype=torch.float32)
    return lambda features: (torch.as_tensor(np.asarray(features), dtype=torch.float32) - mean) / std


def load_split(corpus: str, split: str, processor, limit: int | None = None):
    from datasets import load_from_disk

    data = load_from_disk(corpus)[split]
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    norm = normaliser(processor)
    ids = [processor.tokenizer(text)["input_ids"] for text in data["text"]]
    return [norm(f) for f in data["features"]], ids


def collate(features, ids, index):
    length = max(features[i].shape[0] for i in index)
    x = torch.zeros(len(index), length, features[index[0]].shape[1])
    mask = torch.zeros(len(index), length, dtype=torch.bool)
    for row, i in enumerate(index):
        x[row, : features[i].shape[0]] = features[i]
        mask[row, : features[i].shape[0]] = True
    targets = torch.tensor([t for i in index for t in ids[i]])
    target_lengths = torch.tensor([len(ids[i]) for i in index])
    return x, mask, targets, target_lengths


def phoneme_error_rate(model, features, ids) -> float:
    import jiwer

    model.eval()
    errors = total = 0
    with torch.no_grad():
        for start in range(0, len(features), 32):
            index = list(range(start, min(start + 32, len(features))))
            x, mask, _, _ = collate(features, ids, index)
            logits, out_mask = model(x, mask)
            blank = logits.shape[-1] - 1
            best = logits.argmax(-1)
            for row, i in enumerate(index):
                seq = best[row, : int(out_mask[row].sum())].tolist()
                hyp = [a for j, a in enumerate(seq) if a != blank and (j == 0 or a != seq[j - 1])]
                ref = ids[i]
                errors += jiwer.wer(" ".join(map(str, ref)), " ".join(map(str, hyp)) or "-") * len(ref)
                total += len(ref)
    model.train()
    return errors / total


def train(args) -> None:
    torch.manual_seed(0)
    random.seed(0)
    processor = load_processor()
    features, ids = load_split(args.corpus, "train", processor)
    val_features, val_ids = load_split(args.corpus, "validation", processor, limit=200)
    model = PhonemeRecognizer(features[0].shape[1], len(processor.tokenizer))
    print(f"{len(features)} training utterances; {sum(p.numel() for p in model.parameters())} parameters", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    order = sorted(range(len(features)), key=lambda i: features[i].shape[0])
    batches, current, longest = [], [], 0
    for i in order:  # length-sorted batches of at most `batch_frames` padded frames
        length = features[i].shape[0]
        if current and max(longest, length) * (len(current) + 1) > args.batch_frames:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, length)
    batches.append(current)
    budget, start, step = args.minutes * 60, time.time(), 0
    while time.time() - start < budget:
        random.shuffle(batches)
        for index in batches:
            elapsed = time.time() - start
            if elapsed > budget:
                break
            lr = args.lr * min(1.0, (step + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, mask, targets, target_lengths = collate(features, ids, index)
            logits, out_mask = model(x, mask)
            log_probs = logits.float().log_softmax(-1).transpose(0, 1)
            loss = F.ctc_loss(
                log_probs, targets, out_mask.sum(1), target_lengths, blank=logits.shape[-1] - 1, zero_infinity=True
            )
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            if step % 500 == 0:
                print(
                    f"step {step} loss {loss.item():.3f} ({elapsed / 60:.1f} min) validation PER "
                    f"{phoneme_error_rate(model, val_features, val_ids):.3f}",
                    flush=True,
                )
    per = phoneme_error_rate(model, val_features, val_ids)
    print(f"done: {step} steps; validation phoneme error rate {per:.3f} (200 utterances of unseen voices)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "feature_dim": features[0].shape[1],
            "vocab_size": len(processor.tokenizer),
            "steps": step,
            "validation_per": per,
        },
        args.out,
    )


def rank(args) -> None:
    from eval_lib.cases import load_cases
    from eval_lib.systems import case_seed, load_pipeline

    torch.set_num_threads(args.threads)
    saved = torch.load(args.recognizer, weights_only=True)
    model = PhonemeRecognizer(saved["feature_dim"], saved["vocab_size"])
    model.load_state_dict(saved["state_dict"])
    model.eval()
    pipe = load_pipeline(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    norm = normaliser(pipe.processor)
    probe = {r["id"]: r for r in json.loads(Path(args.probe).read_text())["cases"]}
    picks = {"seed 0": [], "CTC head": [], "recogniser": [], "oracle": []}
    for case in load_cases(args.cases):
        record = probe[case.id]
        candidates = record["candidates"]
        token_ids = pipe.processor.tokenizer(case.target_text)["input_ids"]
        scores = []
        for k in range(len(candidates)):  # the probe's candidate k: the evaluation's sample with seed k
            out = pipe(
                case.target_text,
                prompt_audio=case.prompt_audio,
                prompt_text=case.prompt_text,
                output_type="features",
                generator=torch.Generator().manual_seed(case_seed(k, case.id)),
                num_candidates=1,
            )
            features = out.audios[0][: out.audio_lengths[0]]
            with torch.no_grad():
                scores.append(model.nll_per_token(norm(features), token_ids))
        picks["seed 0"].append(candidates[0])
        picks["CTC head"].append(min(candidates, key=lambda c: c["ctc"]))
        picks["recogniser"].append(candidates[int(np.argmin(scores))])
        picks["oracle"].append(min(candidates, key=lambda c: (c["errors"], -c["hits"])))
        print(case.id, "recogniser", [round(s, 2) for s in scores], "hits", [c["hits"] for c in candidates], flush=True)
    ref = sum(c["ref_words"] for c in picks["seed 0"])
    print(f"\n| selection (best of {len(candidates)}) | words recognised | WER |\n|---|---|---|")
    for name, chosen in picks.items():
        hits, errors = sum(c["hits"] for c in chosen), sum(c["errors"] for c in chosen)
        print(f"| {name} | {hits}/{ref} ({hits / ref:.1%}) | {errors / ref:.1%} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the recogniser on a corpus's training split")
    t.add_argument("--corpus", required=True, help="corpus saved by build_corpus.py (with features)")
    t.add_argument("--minutes", type=float, default=25.0, help="training time budget")
    t.add_argument("--batch-frames", type=int, default=8000, help="padded frames per batch")
    t.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warm-up 200 steps, cosine decay)")
    t.add_argument("--out", required=True, help="where to save the recogniser (.pt)")
    r = sub.add_parser("rank", help="rank the candidate probe's candidates with the recogniser")
    r.add_argument("--cases", required=True, help="the cases the candidate probe ran on")
    r.add_argument("--probe", required=True, help="candidates.json written by candidate_ranking_probe.py")
    r.add_argument("--recognizer", required=True, help="the .pt written by `train`")
    r.add_argument("--pipeline", default=None, help="pipeline the probe used (default: the embedded default)")
    r.add_argument("--threads", type=int, default=2, help="torch CPU threads (the probe's, for the same samples)")
    args = p.parse_args(argv)
    if args.command == "train":
        torch.set_num_threads(2)
        train(args)
    else:
        rank(args)  # sets its own --threads
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
