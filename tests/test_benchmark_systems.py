"""The benchmark's system adapters (examples/benchmark_lib): Pocket TTS from transformers, the F5-TTS runner's
protocol, the unit planning and the table. Tiny configs, seconds each; the F5 runner's own test runs only where its
environment (examples/scripts/install_f5tts_bench_env.sh) exists."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from benchmark_lib import systems  # noqa: E402
from benchmark_lib.pocket import (  # noqa: E402
    build_pocket_tts,
    frames_for,
    pocket_decode,
    pocket_first_audio,
    pocket_generate,
    pocket_inputs,
)
from transformers import PocketTTSAudioTokenizerConfig, PocketTTSConfig  # noqa: E402

F5_PYTHON = ROOT / ".venv-f5" / "bin" / "python"


def tiny_pocket():
    config = PocketTTSConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        flow_head_config=dict(hidden_size=16, num_hidden_layers=1, condition_dim=32, frequency_embedding_size=16),
    )
    codec = PocketTTSAudioTokenizerConfig(
        encoder_config=None,
        hidden_size=32,
        num_filters=4,
        num_hidden_layers=1,
        intermediate_size=32,
        num_attention_heads=2,
        num_key_value_heads=2,
        upsample_groups=32,
    )
    return build_pocket_tts(config, codec)


def test_pocket_generates_the_requested_frames_and_decodes_them():
    model, codec = tiny_pocket()
    inputs = pocket_inputs(model, text_chars=40, batch=2, prompt_seconds=1.0)
    assert inputs["input_ids"][:, 0].eq(model.config.audio_prompt_bos_token_id).all()
    assert inputs["input_ids"][:, -1].eq(model.config.audio_bos_token_id).all()
    assert inputs["audio_prompt_latents"].shape == (2, frames_for(model, 1.0), model.config.latent_dim)
    latents = pocket_generate(model, inputs, frames=7)
    assert latents.shape == (2, 7, model.config.latent_dim)  # the silenced end-of-speech head never stops it
    audio = pocket_decode(codec, latents)
    assert audio.shape == (2, 1, 7 * codec.config.frame_size)
    first = pocket_first_audio(model, codec, pocket_inputs(model, 40, 1, 1.0))
    assert first.shape == (1, 1, codec.config.frame_size)


def test_pocket_published_size_and_frame_rate():
    from transformers import PocketTTSForConditionalGeneration

    config = PocketTTSConfig()
    assert config.frame_rate == 12.5
    with torch.device("meta"):
        model = PocketTTSForConditionalGeneration(config)
    assert 85e6 < sum(p.numel() for p in model.parameters()) < 95e6  # ~90M + a ~10M codec decoder: "100M"


def test_pocket_rejects_bad_inputs():
    model, _ = tiny_pocket()
    with pytest.raises(ValueError, match="batch"):
        pocket_inputs(model, text_chars=10, batch=0)
    with pytest.raises(ValueError, match="frames"):
        pocket_generate(model, pocket_inputs(model, 10, 1, 1.0), frames=0)
    with pytest.raises(ValueError, match="latent_dim"):
        build_pocket_tts(PocketTTSConfig(), PocketTTSAudioTokenizerConfig(encoder_config=None, latent_dim=16))


def test_pocket_system_runs_and_counts_flops():
    system = systems.PocketSystem(*[m.config for m in tiny_pocket()])
    system.quiet_wait = 0.0  # do not wait for a quiet machine in a test
    timing = systems.Timing(threads=1)
    system.run(1.0, 2, 8, timing)
    assert len(timing.walls) == 1 and timing.walls[0] > 0
    generation, decoder = system.flops(2.0)
    assert generation > 0 and decoder > 0
    assert system.first_audio(1.0, timing) and system.decode(1.0, timing)


def test_cpu_attention_flops_are_counted():
    """FlopCounterMode looks its rules up by the op's packet: rules keyed by `op.default` counted CPU attention as 0,
    so the published FLOP figures lacked their attention (most of all the NAR models')."""
    import torch.nn.functional as F
    from benchmark_lib import f5_runner, measure
    from benchmark_lib.models import flop_counter_mapping

    q, k, v = torch.randn(2, 4, 10, 16), torch.randn(2, 4, 30, 16), torch.randn(2, 4, 30, 16)
    expected = 2 * (2 * 2 * 4 * 10 * 30 * 16)  # QK^T and AV: a multiply and an add per product
    with torch.no_grad():
        for mask in (None, torch.ones(10, 30, dtype=torch.bool)):
            call = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # noqa: B023, E731
            assert measure.count_flops(call, flop_counter_mapping()) == expected
            assert measure.count_flops(call, f5_runner.attention_flop_mapping()) == expected  # the F5 runner's rule


def test_size_grid_times_the_vocoder_on_the_whole_row(monkeypatch):
    """A row timed on a prefix of its patches timed Griffin-Lim on the prefix's frames only."""
    import benchmark
    from benchmark_lib import measure

    monkeypatch.setattr(measure, "wait_until_quiet", lambda threads, max_wait=0: 0.0)
    decoded = []

    class Vocoder:
        def decode(self, frames):
            decoded.append(tuple(frames.shape))

    def stream(text, **kwargs):
        yield torch.zeros(10)

    model = argparse.Namespace(config=argparse.Namespace(patch_size=4), denormalize_features=lambda x: x)
    pipe = argparse.Namespace(model=model, stream=stream, _streaming_vocoder=Vocoder)
    args = argparse.Namespace(steps=2, guidance_scale=2.0, temperature=0.5, repeats=1, threads=1)
    prefix = torch.randn(1, 8 * 4, 80)  # 8 of the row's 50 patches were generated (and timed)
    out = benchmark.first_chunk_and_vocoder(pipe, 4.0, 50, args, prefix)
    assert decoded == [(50 * 4, 80)] and out["vocoder_wall"] is not None
    assert torch.equal(benchmark.full_length_frames(prefix, 50 * 4)[32:64], prefix[0])  # the prefix, repeated


def test_systems_grid_encodes_inputs_before_the_timed_runs(monkeypatch):
    """Batch 4's inputs (and batch 1's with --no-flops) were encoded inside the first timed run."""
    from benchmark_lib import pocket
    from pipeline_helpers import get_dummy_pipeline

    timing_now = []
    timed_run = systems.timed_run

    def watched(fn, timing, quiet_wait=20.0):
        timing_now.append(True)
        try:
            return timed_run(fn, timing, 0.0)
        finally:
            timing_now.pop()

    encoded_while_timed = []
    monkeypatch.setattr(systems, "timed_run", watched)
    pipe = get_dummy_pipeline()
    pipe.model.config.text_config.max_position_embeddings = 4096  # the benchmark's 3 s prompt (see above)
    encode = pipe.encode_inputs
    pipe.encode_inputs = lambda *a, **k: encoded_while_timed.append(("ditar", bool(timing_now))) or encode(*a, **k)
    pocket_inputs = pocket.pocket_inputs
    monkeypatch.setattr(
        pocket,
        "pocket_inputs",
        lambda *a, **k: encoded_while_timed.append(("pocket", bool(timing_now))) or pocket_inputs(*a, **k),
    )
    ditar = systems.DiTARSystem(pipe, num_candidates=1)
    ditar.min_units, ditar.units = 2, lambda seconds: 3
    pocket_system = systems.PocketSystem(*[m.config for m in tiny_pocket()])
    pocket_system.units = lambda seconds: 3
    args = argparse.Namespace(
        seconds=[1.0], batches=[2], repeats=1, threads=1, no_flops=True, ditar_budget=60.0, nar_budget=60.0,
        nar_timed_steps=1, nar_max_step_seconds=60.0,
    )  # fmt: skip
    rows = list(systems.measure_grid([ditar, pocket_system], args, print))
    assert [r["system"] for r in rows] == ["ditar", "pocket"] and all(r["wall"] for r in rows)
    assert {name for name, _ in encoded_while_timed} == {"ditar", "pocket"}
    assert not [name for name, timed in encoded_while_timed if timed]


class _FakeSystem(systems.BenchSystem):
    def __init__(self, name, min_units, units):
        self.name, self.min_units, self._units = name, min_units, units

    def units(self, seconds):
        return self._units


def test_plan_units_projects_and_skips():
    args = argparse.Namespace(ditar_budget=10.0, nar_budget=10.0, nar_timed_steps=32, nar_max_step_seconds=5.0)
    ar, nar = _FakeSystem("ar", 16, 125), _FakeSystem("nar", 1, 32)
    assert systems.plan_units(ar, 10.0, 1, {}, args) == 125  # no estimate yet: the whole run
    assert systems.plan_units(nar, 10.0, 1, {}, args) == systems.FIRST_STEPS
    times = {"ar": (10.0, 1, 0.01), "nar": (10.0, 1, 1.0)}
    assert systems.plan_units(ar, 10.0, 1, times, args) == 125  # 1.25 s fits the budget
    assert systems.plan_units(ar, 10.0, 16, times, args) == 62  # 0.16 s a patch: the prefix that fits 10 s
    assert systems.plan_units(nar, 10.0, 1, times, args) == 10
    assert systems.plan_units(nar, 40.0, 4, times, args) == 0  # one step estimated over 5 s: skipped


def test_systems_table_marks_projection_and_first_audio():
    base = dict(params=1e6, seconds=10.0, threads=1, units=32, clean=True, peak_mb=5.0)
    rows = [
        dict(base, system="f5", batch=1, timed_units=2, wall=20.0, decoder_wall=1.0, gflop_per_audio_s=3.0),
        dict(base, system="nar", batch=1, timed_units=32, wall=5.0),
        dict(base, system="nar", batch=16, timed_units=0, wall=None, clean=None),
    ]
    table = systems.systems_table(rows)
    assert "| f5 | 1.0M | 10 | 1 | ~2.000 | 0.50 | =21000 | 2.100 | 3.0 | 5 |" in table
    assert "| nar | 1.0M | 10 | 1 | 0.500 | 2.00 | >5000 |" in table
    assert "| nar | 1.0M | 10 | 16 | skipped |" in table


def test_gapless_start_waits_for_the_chunk_that_would_leave_a_gap():
    # 0.3 s of audio at 0.1 s; the next chunk comes at 0.6 s: starting at 0.1 would leave a 0.2 s gap
    assert systems.gapless_start([0.1, 0.6, 0.7], [0.3, 1.0, 1.0]) == pytest.approx(0.3)
    assert systems.gapless_start([0.1, 0.2, 0.3], [0.3, 1.0, 1.0]) == pytest.approx(0.1)  # ahead of playback
    rows = [dict(params=1e6, seconds=10.0, threads=1, units=32, clean=True, peak_mb=5.0, system="ditar", batch=1)]
    rows[0].update(timed_units=32, wall=2.0, first_audio_s=0.12, gapless_start_s=0.3)
    assert "| 0.200 | 5.00 | 120 (300) |" in systems.systems_table(rows)


def test_ditar_gapless_start_runs_the_whole_stream():
    from pipeline_helpers import get_dummy_pipeline

    pipe = get_dummy_pipeline()
    # the benchmark's 3 s voice prompt is 750 patches at the tiny model's 500 frames per second: more positions than
    # its 512 (rotary embeddings have no table to outgrow, so only the position check reads the setting)
    pipe.model.config.text_config.max_position_embeddings = 4096
    system = systems.DiTARSystem(pipe, num_candidates=1)
    system.quiet_wait = 0.0
    system.units = lambda seconds: 3
    start = system.gapless_start(1.0)
    assert 0 < start < 60


def test_ditar_system_names_the_pipeline_it_measures(tmp_path):
    """A table row must not call a --ditar-model folder (e.g. a student) the shipped default."""
    from pipeline_helpers import get_dummy_pipeline

    folder = tmp_path / "student"
    get_dummy_pipeline().save_pretrained(folder)
    args = argparse.Namespace(ditar_model=str(folder), quiet_wait=0.0)
    built = systems.build_systems(["ditar", "ditar-1cand"], args, print)
    names = [s.describe().split(",")[0] for s in built]
    assert names == [f"ditar: pipeline {folder}", f"ditar-1cand: pipeline {folder}"]
    assert systems.DiTARSystem(get_dummy_pipeline()).describe().startswith("ditar: shipped default, ")


def test_unknown_system_is_rejected():
    with pytest.raises(ValueError, match="unknown system"):
        systems.build_systems(["ditar", "vall-e"], argparse.Namespace(ditar_model=None), print)


@pytest.mark.slow  # importing the F5-TTS stack takes ~15 s
@pytest.mark.skipif(not F5_PYTHON.is_file(), reason="no F5-TTS environment (install_f5tts_bench_env.sh)")
def test_f5_runner_protocol_with_a_tiny_model():
    arch = dict(dim=32, depth=1, heads=2, ff_mult=2, text_dim=16, conv_layers=1)
    vocos = dict(dim=16, intermediate_dim=32, num_layers=1)
    requests = [
        dict(op="info"),
        dict(op="generate", seconds=0.5, batch=2, steps=2, quiet_wait=0.0),
        dict(op="vocode", seconds=0.5, quiet_wait=0.0),
        dict(op="flops", seconds=0.5),
        dict(op="nonsense"),
        dict(op="quit"),
    ]
    result = subprocess.run(
        [str(F5_PYTHON), str(ROOT / "examples/benchmark_lib/f5_runner.py"), "--arch", json.dumps(arch)]
        + ["--vocos", json.dumps(vocos)],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        timeout=120,
        env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert replies[0] == {"ready": True}, result.stderr[-2000:]
    info, generate, vocode, flops, error = replies[1:]
    assert info["config"] == "F5TTS_v1_Small" and info["nfe"] == 32 and info["frames_per_second"] == 93.75
    assert generate["wall"] > 0 and vocode["wall"] > 0
    assert flops["nfe"] > 0 and flops["vocoder"] > 0
    assert "unknown op" in error["error"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--threads", "0"], "--threads 0: give at least 1"),
        (["--repeats", "0"], "--repeats 0: give at least 1"),  # ran the warm-up, then failed on an empty min()
        (["--batches", "0"], "--batches '0': give comma-separated numbers above 0"),
        (["--seconds", "abc"], "--seconds 'abc': give comma-separated floats"),
        (["--sizes", "nope"], "--sizes 'nope': unknown 'nope'; choose among ship"),  # a KeyError
        (["--systems", ""], "--systems '': choose among ditar"),  # silently ran the whole size grid
        (["--systems", "ditar,vall-e"], "--systems 'ditar,vall-e': unknown 'vall-e'; choose among"),
        (["--systems", "nar,nar"], "a name is given twice"),  # two identical rows sharing one timing
        (["--nar-timed-steps", "-1"], "--nar-timed-steps -1: give at least 1"),  # negative timings, exit 0
        (["--seconds", "0.01"], "give finite lengths of at least 0.08 s (one patch)"),  # "skipped", wrong reason
        (["--seconds", "nan"], "give finite lengths"),  # a ValueError deep in the run
        (["--temperature", "2"], "--temperature 2.0: give a number in [0, 1]"),  # failed after building the model
        (["--quiet-wait", "nan", "--systems", "nar"], "--quiet-wait nan"),  # waited without a limit
        (["--from-jsonl"], "--from-jsonl: give one or more results.jsonl"),  # ran the whole 35-minute grid
        (["--ditar-model", "x"], "--ditar-model: no effect with the size grid"),  # ignored, not even checked
        (["--systems", "ditar", "--sizes", "40M", "--steps", "4"], "--sizes, --steps: no effect with --systems"),
        (["--systems", "nar", "--no-nar"], "--no-nar: no effect with --systems"),  # nar still ran
        (["--knobs", "--seconds", "5"], "--seconds: no effect with --knobs"),  # always 10 s
        (["--reference", "--compile"], "leave out --compile"),  # compile dropped, settings read "reference"
        (["--systems", "ditar", "--ditar-model", "nowhere"], "--ditar-model nowhere: not a saved DiTARPipeline"),
    ],
)
def test_benchmark_arguments_that_cannot_work_are_named_first(argv, message, capsys, tmp_path):
    import benchmark

    with pytest.raises(SystemExit):
        benchmark.main([*argv, "--out-dir", str(tmp_path / "out")])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_out_dir_below_a_file_is_named_first(tmp_path, capsys):
    import benchmark

    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(SystemExit):
        benchmark.main(["--out-dir", str(tmp_path / "notes.txt" / "sub")])
    assert "notes.txt is not a writable folder" in capsys.readouterr().err


def test_quick_fills_only_the_options_not_given(monkeypatch, tmp_path):
    """`--quick --repeats 3` ran one round: --quick overwrote the options given with it."""
    import benchmark

    seen = {}
    monkeypatch.setattr(benchmark, "compare_systems", lambda args, out_dir: seen.update(vars(args)))
    benchmark.main(["--systems", "nar", "--quick", "--repeats", "3", "--out-dir", str(tmp_path)])
    assert (seen["repeats"], seen["seconds"], seen["batches"], seen["quiet_wait"]) == (3, [10.0], [1, 4], 3.0)
    benchmark.main(["--systems", "nar", "--out-dir", str(tmp_path)])
    assert (seen["repeats"], seen["seconds"], seen["quiet_wait"]) == (2, [5.0, 10.0, 20.0, 40.0], 20.0)


def test_from_jsonl_names_bad_results_before_writing_anything(tmp_path, capsys):
    import benchmark

    out = tmp_path / "out"
    out.mkdir()
    (out / "table.md").write_text("the earlier table")
    systems_rows = tmp_path / "systems.jsonl"
    systems_rows.write_text(json.dumps({"system": "nar", "seconds": 10, "batch": 1}) + "\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    for path, message in (
        (tmp_path / "missing.jsonl", "cannot read it"),
        (systems_rows, "line 1: not a row of the size grid's results.jsonl (a --systems run's systems.jsonl"),
        (empty, "no results in them"),
    ):
        with pytest.raises(SystemExit):
            benchmark.main(["--from-jsonl", str(path), "--out-dir", str(out)])
        assert message in capsys.readouterr().err
    assert (out / "table.md").read_text() == "the earlier table"


def test_every_requested_system_skipped_is_an_error_and_a_skipped_one_is_reported(monkeypatch, tmp_path):
    import benchmark

    def build(names, args, log, skipped=None):
        skipped.append(("f5", "no F5-TTS environment at .venv-f5/bin/python"))
        return []

    monkeypatch.setattr(systems, "build_systems", build)
    with pytest.raises(SystemExit, match="none of the requested systems could be built.*f5: no F5-TTS environment"):
        benchmark.main(["--systems", "f5", "--quick", "--out-dir", str(tmp_path)])
    assert not (tmp_path / "systems.md").exists()
