"""The evaluation loop: for every case and every system, produce audio, transcribe it, embed it, and score it."""

from __future__ import annotations

import hashlib
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .cases import Case, _safe
from .metrics import BASIC_NORMALIZER, WordStats, aggregate_word_stats, cosine, finite_values, mean_or_none, word_stats
from .quality import summarize_quality
from .systems import read_audio


def wav_name(case_id: str) -> str:
    """A file name for a case's audio. Where making the id file-safe changed it, a short hash of the id is added:
    "me 1" and "me/1" (or "é1" and "ü1") would otherwise share one file."""
    safe = _safe(case_id)
    if safe != case_id:
        safe += "-" + hashlib.sha1(case_id.encode("utf-8")).hexdigest()[:8]
    return f"{safe}.wav"


def _embed(encoder, audio, rate):
    try:
        return encoder.embed(audio, rate)
    except Exception as err:  # noqa: BLE001 - a clip the encoder cannot take is a missing SIM, not a crash
        print(f"  [warn] speaker embedding failed: {type(err).__name__}: {err}")
        return None


def run_evaluation(
    cases: list[Case],
    systems: list,
    asr,
    speaker_encoder,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    quality=None,
    text_normalizer: Callable[[str], str] = BASIC_NORMALIZER,
) -> dict:
    """Score every system on every case it applies to.

    Returns `{"rows": [summary per system], "cases": [per-case details]}`. With `out_dir`, the produced audio is
    written to `out_dir/wavs/<system key>/<case id>.wav` (float WAV at the system's rate; `wav_name` makes the id
    file-safe). With `quality` (e.g. `eval_lib.quality.DNSMOS`), every produced clip also gets a `dnsmos` score and
    every row its means. `text_normalizer` normalises reference and hypothesis before WER (eval_lib.metrics).
    """
    import soundfile as sf

    wav_root = Path(out_dir) / "wavs" if out_dir is not None else None
    records = []
    per_system: dict[str, list[dict]] = {s.key: [] for s in systems}
    start_all = time.perf_counter()
    for index, case in enumerate(cases):
        prompt_audio, prompt_rate = read_audio(case.prompt_audio)
        prompt_emb = _embed(speaker_encoder, prompt_audio, prompt_rate)
        gt_seconds = gt_emb = None
        if case.target_audio is not None:
            gt_audio, gt_rate = read_audio(case.target_audio)
            gt_seconds = gt_audio.size / gt_rate
            gt_emb = _embed(speaker_encoder, gt_audio, gt_rate)
        record = {
            "id": case.id,
            "target_text": case.target_text,
            "prompt_text": case.prompt_text,
            "voice": case.voice,
            "prompt_seconds": prompt_audio.size / prompt_rate,
            "target_seconds": gt_seconds,
            "rows": {},
        }
        for system in systems:
            if not system.applies(case):
                continue
            row: dict = {"error": None}
            try:
                out = system(case)
            except Exception as err:  # noqa: BLE001 - a failed case counts as saying nothing, and is reported
                row.update(
                    error=f"{type(err).__name__}: {err}",
                    hypothesis="",
                    seconds=0.0,
                    compute_seconds=None,
                    stopped=None,
                    sim_prompt=None,
                    sim_gt=None,
                    duration_ratio=None,
                )
                row["words"] = word_stats(case.target_text, "", text_normalizer).to_dict()
                log(f"  [error] {case.id} {system.key}: {row['error']}\n{traceback.format_exc(limit=3)}")
                record["rows"][system.key] = row
                per_system[system.key].append(row)
                continue
            audio = np.asarray(out.audio, dtype=np.float32).reshape(-1)
            seconds = audio.size / out.sampling_rate
            if wav_root is not None:
                path = wav_root / system.key / wav_name(case.id)
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, audio, out.sampling_rate, subtype="FLOAT")
                row["wav"] = str(path.relative_to(Path(out_dir)))
            hypothesis = asr.transcribe(audio, out.sampling_rate)
            stats = word_stats(case.target_text, hypothesis, text_normalizer)
            emb = gt_emb if system.key == "gt" else _embed(speaker_encoder, audio, out.sampling_rate)
            row.update(
                hypothesis=hypothesis,
                words=stats.to_dict(),
                seconds=seconds,
                compute_seconds=out.compute_seconds,
                stopped=out.stopped,
                sim_prompt=cosine(emb, prompt_emb) if emb is not None and prompt_emb is not None else None,
                sim_gt=cosine(emb, gt_emb) if system.key != "gt" and emb is not None and gt_emb is not None else None,
                duration_ratio=seconds / gt_seconds if gt_seconds else None,
            )
            if quality is not None:
                try:
                    row["dnsmos"] = quality.score(audio, out.sampling_rate)
                except Exception as err:  # noqa: BLE001 - a clip the scorer cannot take is a missing score
                    log(f"  [warn] DNSMOS failed: {type(err).__name__}: {err}")
                    row["dnsmos"] = None
            record["rows"][system.key] = row
            per_system[system.key].append(row)
            wer = stats.wer
            log(
                f"[{index + 1}/{len(cases)}] {case.id} {system.key:8s} "
                f"WER {'-' if wer is None else f'{100 * wer:5.1f}%'}"
                f" hits {stats.hits}/{stats.ref_words} SIM {_fmt(row['sim_prompt'])} dur {seconds:.2f}s"
                + (f" stopped={out.stopped}" if out.stopped is not None else "")
                + f" | {hypothesis[:70]!r}"
            )
        records.append(record)
    rows = [summarize_rows(system, per_system[system.key]) for system in systems]
    if quality is not None:
        for row, system in zip(rows, systems, strict=True):
            row.update(summarize_quality(per_system[system.key]))
    return {"rows": rows, "cases": records, "eval_seconds": time.perf_counter() - start_all}


def _fmt(value):
    return "-" if value is None else f"{value:.3f}"


def summarize_rows(system, rows: list[dict]) -> dict:
    """Corpus-level numbers of one system. WER counts every case (a failed one as silence); the other columns average
    the cases that have their value, and `<column>_n` says how many that was (SIM (GT) and the duration ratio need
    target audio, a clip too short to embed has no SIM, a failed case has no duration)."""
    words = aggregate_word_stats(
        WordStats(**{k: r["words"][k] for k in ("ref_words", "hits", "substitutions", "deletions", "insertions")})
        for r in rows
    )
    stopped = [r["stopped"] for r in rows if r.get("stopped") is not None]
    compute = [r["compute_seconds"] for r in rows if r.get("compute_seconds") is not None]
    audio_seconds = sum(r["seconds"] for r in rows if r.get("compute_seconds") is not None)
    sims = [r["sim_prompt"] for r in rows if r.get("sim_prompt") is not None]
    sims_gt = finite_values(r.get("sim_gt") for r in rows)
    ratios = finite_values(r.get("duration_ratio") for r in rows)
    durations = finite_values(r.get("seconds") for r in rows if not r.get("error"))
    return {
        "key": system.key,
        "name": system.name,
        "settings": system.describe(),
        "cases": len(rows),
        "failed": sum(1 for r in rows if r.get("error")),
        **{
            k: words[k]
            for k in (
                "wer",
                "wer_capped",
                "recognised",
                "ref_words",
                "hits",
                "errors",
                "substitutions",
                "deletions",
                "insertions",
                "mean_utterance_wer",
            )
        },
        "sim_prompt": mean_or_none(sims),
        "sim_prompt_std": float(np.std(sims)) if sims else None,
        "sim_prompt_n": len(sims),
        "sim_gt": mean_or_none(sims_gt),
        "sim_gt_n": len(sims_gt),
        "stop_rate": float(np.mean(stopped)) if stopped else None,
        "stop_rate_n": len(stopped),
        "duration_ratio": mean_or_none(ratios),
        "duration_ratio_n": len(ratios),
        "mean_seconds": mean_or_none(durations),
        "mean_seconds_n": len(durations),
        "compute_seconds": float(sum(compute)) if compute else None,
        "rtf": float(sum(compute) / audio_seconds) if compute and audio_seconds > 0 else None,
        "rtf_n": len(compute),
    }
