"""Training script: a tiny run resumes after an interruption with exactly the same loss curve."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from preloaded_python import run as run_script

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "train.py"


def _tiny_corpus(directory: Path, texts: dict | None = None, splits=("train", "validation"), features: bool = True):
    """DIRECTORY/corpus: 24 train and 4 validation rows of random features and their feature extractor. `texts`
    {(split, row): text} replaces those transcripts (and adds a file_name column); `splits` keeps only those splits;
    `features=False` is a corpus built without --features (no features column, no feature_extractor/)."""
    from datasets import Dataset, DatasetDict

    from modeling_ditar import DiTARFeatureExtractor

    generator = torch.Generator().manual_seed(0)
    words = ["hello world", "a small test", "speech is fun", "more words here", "the quick fox", "good day"]

    def split(name, num, offset):
        rows = {"features": [], "text": [], "speaker_id": []}
        for i in range(num):
            frames = 12 + 4 * (i % 5)
            rows["features"].append((torch.randn(frames, 8, generator=generator) - 4).tolist())
            rows["text"].append((texts or {}).get((name, i), words[(i + offset) % len(words)]))
            rows["speaker_id"].append(f"spk{(i + offset) % 3}")
        if texts:
            rows["file_name"] = [f"clips/{name}-{i}.wav" for i in range(num)]
        if not features:
            del rows["features"]
        return Dataset.from_dict(rows)

    made = {"train": split("train", 24, 0), "validation": split("validation", 4, 1)}
    DatasetDict({name: made[name] for name in splits}).save_to_disk(str(directory / "corpus"))
    if not features:
        return
    fe = DiTARFeatureExtractor(
        feature_size=8, sampling_rate=16000, n_fft=256, hop_length=160, feature_mean=[-4.0] * 8, feature_std=[1.0] * 8
    )
    fe.save_pretrained(directory / "corpus" / "feature_extractor")


def _config(directory: Path, **model_overrides) -> Path:
    config = {
        "dataset": str(directory / "corpus"),
        "phonemize": False,
        "model": {
            "patch_size": 2,
            "num_history_patches": 1,
            "history_dropout_prob": 0.3,
            "encoder_hidden_size": 32,
            "encoder_num_layers": 1,
            "encoder_num_heads": 4,
            "encoder_intermediate_size": 64,
            "locdit_hidden_size": 32,
            "locdit_num_layers": 1,
            "locdit_num_heads": 4,
            "locdit_intermediate_size": 64,
            "text_config": {
                "model_type": "qwen2",
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            },
        },
        "max_steps": 6,
        "learning_rate": 1e-3,
        "warmup_steps": 2,
        "max_batch_frames": 120,
        "max_example_frames": 60,
        "checkpoint_every": 3,
        "eval_every": 100,
        "log_every": 1,
        "num_threads": 1,
    }
    config["model"].update(model_overrides)
    path = directory / "tiny.json"
    path.write_text(json.dumps(config))
    return path


def _run_train(config: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_script(
        [sys.executable, str(TRAIN), "--config", str(config), "--output-dir", str(output), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def _train(config: Path, output: Path, *extra: str):
    result = _run_train(config, output, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _train_failing(config: Path, output: Path, *extra: str):
    """A train.py run that must stop with an error; returns it for the message."""
    result = _run_train(config, output, *extra)
    assert result.returncode != 0, result.stdout[-2000:]
    return result


def _losses(output: Path) -> dict[int, str]:
    with (output / "log.csv").open() as f:
        return {int(row["step"]): row["loss"] for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The tiny corpus, its config and a 6-step run never interrupted, shared by the resume tests."""
    folder = tmp_path_factory.mktemp("straight-run")
    _tiny_corpus(folder)
    config = _config(folder)
    _train(config, folder / "straight")
    return folder, config


def test_resume_continues_the_same_run(straight_run):
    tmp_path, config = straight_run
    _train(config, tmp_path / "interrupted", "--stop-after", "3")
    assert sorted(p.name for p in (tmp_path / "interrupted" / "checkpoints").iterdir()) == ["step-3"]
    resumed = _train(config, tmp_path / "interrupted", "--resume")
    assert "resumed from" in resumed.stdout

    straight, interrupted = _losses(tmp_path / "straight"), _losses(tmp_path / "interrupted")
    assert set(straight) == set(range(1, 7))
    assert {step: interrupted[step] for step in range(4, 7)} == {step: straight[step] for step in range(4, 7)}
    # the finished run exports EMA weights that load as a DiTAR model
    from modeling_ditar import DiTARForConditionalGeneration

    model = DiTARForConditionalGeneration.from_pretrained(tmp_path / "straight" / "final" / "model")
    assert model.config.patch_size == 2
    # the final evaluation logs both text-use gaps: single utterances, then prompt + target rows
    step, *gaps = (tmp_path / "straight" / "text_use.csv").read_text().splitlines()[-1].split(",")
    assert step == "6" and len(gaps) == 6 and all(float(g) == float(g) for g in gaps)


# an evaluation that draws from every random stream before it does its work, as any evaluation code may
_DRAWING_EVALUATION = """
import importlib.util, os, random, sys
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(sys.argv[1]))  # as when train.py runs as a script
spec = importlib.util.spec_from_file_location("train", sys.argv[1])
train = sys.modules["train"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)
write_validation_sample = train.write_validation_sample

def drawing_first(*args, **kwargs):
    torch.rand(7), np.random.rand(3), random.random()
    return write_validation_sample(*args, **kwargs)

train.write_validation_sample = drawing_first
train.main(sys.argv[2:])
"""


def _log_rows(output: Path) -> list[dict]:
    with (output / "log.csv").open() as f:
        return list(csv.DictReader(f))


def test_evaluations_leave_the_training_unchanged_and_a_resume_after_one_matches(straight_run):
    """Evaluation shared the training's random streams (when the model's eval-mode loss drew from them, eval_every 2
    and 100 trained other weights), a resumed run logged the steps past its checkpoint twice, and the `lr` column held
    the next step's rate. Here evaluations that draw random numbers follow steps 2 and 4, the run stops after step 5
    and resumes from step 3's checkpoint, which an evaluation followed: every loss and the final weights are those of
    the run that evaluated only at its end."""
    from safetensors.torch import load_file

    tmp_path, config = straight_run
    data = json.loads(config.read_text())
    data["eval_every"] = 2
    evaluating = tmp_path / "eval-every-2.json"
    evaluating.write_text(json.dumps(data))
    wrapper = tmp_path / "drawing_evaluation.py"
    wrapper.write_text(_DRAWING_EVALUATION)
    run = tmp_path / "evaluated"

    def train_with_drawing_evaluation(*extra):
        args = [sys.executable, str(wrapper), str(TRAIN), "--config", str(evaluating), "--output-dir", str(run)]
        result = run_script([*args, *extra], capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    straight = _losses(tmp_path / "straight")
    train_with_drawing_evaluation("--stop-after", "5")
    assert _losses(run) == {step: straight[step] for step in range(1, 6)}  # steps 3 and 5 follow an evaluation
    assert "resumed from" in train_with_drawing_evaluation("--resume").stdout
    rows = _log_rows(run)
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4, 5, 6]  # steps 4 and 5 are not logged twice
    assert _losses(run) == straight
    assert [line.split(",")[0] for line in (run / "text_use.csv").read_text().splitlines()] == ["2", "4", "6"]
    final, uninterrupted = (load_file(str(d / "final/model/model.safetensors")) for d in (run, tmp_path / "straight"))
    assert final.keys() == uninterrupted.keys() and all(torch.equal(final[k], uninterrupted[k]) for k in final)
    # the rate each step was taken with: warmup_steps 2 gives half the peak at step 1
    train = _train_module()
    cfg = train.TrainConfig(**{k: v for k, v in data.items() if k in ("max_steps", "learning_rate", "warmup_steps")})
    assert [float(row["lr"]) for row in rows] == pytest.approx(
        [cfg.learning_rate * train.lr_factor(cfg, step - 1) for step in range(1, 7)], rel=1e-5
    )
    assert float(rows[0]["lr"]) == pytest.approx(cfg.learning_rate / 2, rel=1e-5)


def test_a_budgeted_run_resumes_towards_the_end_its_budget_set(straight_run):
    """--time-budget-min set max_steps in memory only: resumed, the run headed for the config's max_steps with its
    learning rate back at the peak. A budget already spent at the first step ends the run there; resumed without a
    budget it stays ended, and a new budget continues it at the rate it had."""
    tmp_path, config = straight_run
    run = tmp_path / "budgeted"
    _train(config, run, "--time-budget-min", "1e-9")
    assert sorted(_losses(run)) == [1] and (run / "checkpoints" / "step-1").is_dir()
    resumed = _train(config, run, "--resume")
    assert "max_steps 1: the end its --time-budget-min set (the config's is 6)" in resumed.stdout
    assert sorted(_losses(run)) == [1]
    extended = _train(config, run, "--resume", "--time-budget-min", "1e-9")
    assert "--time-budget-min: the run goes on from step 1 (it was to end at 1)" in extended.stdout
    rows = _log_rows(run)
    assert [int(row["step"]) for row in rows] == [1, 2] and float(rows[1]["lr"]) == pytest.approx(1e-3)


def _budgeted_steps(train, clock, cfg, state, budget, until: int | None = None) -> dict[int, float]:
    """Steps of a run with a time budget at 2 steps a second (train.py's loop without the training): the lr factor
    each step sets for the next, by step, until the run ends (or at step `until`)."""
    factors = {state.step: train.lr_factor(cfg, state.step, state.decay_from)}
    while state.step < cfg.max_steps and state.step != until:
        clock["now"] += 0.5
        state.step += 1
        budget.update(state.step)
        factors[state.step] = train.lr_factor(cfg, state.step, state.decay_from)
    return factors


def test_the_lr_schedule_of_a_budgeted_run_is_saved_and_a_new_end_continues_it(monkeypatch):
    """The checkpoint's state holds the end --time-budget-min set: a resume goes on with the same learning rates. A new
    budget on resume (or another max_steps) moves the end and the lr goes on from where it was, without going back
    to the peak; a finished run extended trains on at min_lr_ratio."""
    train = _train_module()
    clock = {"now": 1000.0}
    monkeypatch.setattr(train.time, "time", lambda: clock["now"])
    settings = {"max_steps": 10**6, "decay_start": 0.6, "warmup_steps": 10, "min_lr_ratio": 0.1}

    def resumed(saved: dict, budgeted: bool, **changed):
        cfg = train.TrainConfig(**settings | changed)
        state = train.TrainState(cfg)
        state.load_state_dict(saved)
        train.continue_schedule(cfg, state, budgeted, log=lambda line: None)
        return cfg, state

    cfg = train.TrainConfig(**settings)
    state = train.TrainState(cfg)
    budget = train.TimeBudget(10.0, cfg, 0, state=state)
    straight = _budgeted_steps(train, clock, cfg, state, budget, until=1000)  # killed in the decay
    saved = state.state_dict()
    end = cfg.max_steps
    assert 1100 < end < 1200 and saved["max_steps"] == end and saved["max_steps_given"] == 10**6
    straight |= _budgeted_steps(train, clock, cfg, state, budget)

    cfg, state = resumed(saved, budgeted=False)  # the same end and learning rates as without the interruption
    assert cfg.max_steps == end
    assert all(train.lr_factor(cfg, step, state.decay_from) == straight[step] for step in range(1000, end + 1))

    cfg, state = resumed(saved, budgeted=True)  # 10 more minutes from step 1000
    before = straight[1000]
    extended = _budgeted_steps(train, clock, cfg, state, train.TimeBudget(10.0, cfg, 1000, state=state))
    assert 1000 + 1100 < cfg.max_steps < 1000 + 1200 and cfg.max_steps in extended
    steps = sorted(extended)
    assert extended[1000] == pytest.approx(before) and max(extended.values()) == pytest.approx(before)
    assert max(abs(extended[a] - extended[b]) for a, b in zip(steps, steps[1:], strict=False)) < 1e-3
    assert extended[cfg.max_steps] == pytest.approx(0.1)

    cfg, state = resumed(state.state_dict(), budgeted=True)  # the finished run, extended again
    again = _budgeted_steps(train, clock, cfg, state, train.TimeBudget(5.0, cfg, state.step, state=state))
    assert len(again) > 500 and all(f == pytest.approx(0.1) for f in again.values())

    cfg, state = resumed(saved, budgeted=False, max_steps=3000)  # another max_steps on resume: the decay goes on
    assert cfg.max_steps == 3000 and train.lr_factor(cfg, 1000, state.decay_from) == pytest.approx(before)
    factors = [train.lr_factor(cfg, step, state.decay_from) for step in range(1000, 3001)]
    assert all(0 <= a - b < 1e-3 for a, b in zip(factors, factors[1:], strict=False)) and factors[-1] == 0.1


def test_dropping_the_ctc_head_of_init_from_drops_its_candidates_too(straight_run, tmp_path, capsys):
    """`model: {ctc_loss_weight: 0}` over an init_from with a CTC head and num_candidates 4 kept the 4 candidates,
    which only the CTC head can rank: the first validation sample raised, and the exported model could not generate
    with its own settings."""
    from modeling_ditar import DiTARConfig, DiTARForConditionalGeneration, DiTARProcessor

    train = _train_module()
    run, config = straight_run
    corpus = Path(json.loads(config.read_text())["dataset"])
    settings = DiTARConfig.from_pretrained(run / "straight" / "final" / "model").to_dict() | {"ctc_loss_weight": 0.1}
    ranked = DiTARForConditionalGeneration(DiTARConfig(**settings))
    candidates = {"num_candidates": 4, "candidate_prune_after_patches": 12, "candidate_shared_patches": 2}
    for key, value in candidates.items():
        setattr(ranked.generation_config, key, value)
    ranked.save_pretrained(tmp_path / "ranked" / "model")
    processor = DiTARProcessor.from_pretrained(run / "straight" / "final" / "processor")
    processor.save_pretrained(tmp_path / "ranked" / "processor")

    kept, _ = train.load_model_and_processor(train.TrainConfig(init_from=str(tmp_path / "ranked")), corpus)
    assert kept.ctc_head is not None and kept.generation_config.num_candidates == 4
    capsys.readouterr()
    cfg = train.TrainConfig(init_from=str(tmp_path / "ranked"), model={"ctc_loss_weight": 0.0})
    model, _ = train.load_model_and_processor(cfg, corpus)
    assert model.ctc_head is None
    generation = model.generation_config
    assert generation.num_candidates == 1
    assert generation.candidate_prune_after_patches is None and generation.candidate_shared_patches == 0
    assert model.generation_settings().num_candidates == 1  # raised "num_candidates=4 needs the model's CTC head"
    note = capsys.readouterr().out
    assert "without a CTC head" in note and "num_candidates 4 -> 1, candidate_prune_after_patches 12 -> None" in note


def test_auxiliary_losses_are_logged_in_their_own_columns(tmp_path):
    _tiny_corpus(tmp_path)
    config = _config(tmp_path, ctc_loss_weight=0.1, guided_attention_weight=0.5, guided_attention_heads=[[0, 1]])
    run = _train(config, tmp_path / "run", "--max-steps", "3")
    with (tmp_path / "run" / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for row in rows:
        ctc, guided = float(row["ctc_loss"]), float(row["guided_attention_loss"])
        assert ctc > 0 and 0 < guided <= 1
        parts = float(row["diffusion_loss"]) + float(row["stop_loss"]) + 0.1 * ctc + 0.5 * guided
        assert abs(float(row["loss"]) - parts) < 1e-4  # the total is the weighted sum of the logged parts
    assert " guided_attention " in run.stdout


def test_refuses_to_overwrite_a_run_without_resume(tmp_path):
    _tiny_corpus(tmp_path)
    config = _config(tmp_path)
    _train(config, tmp_path / "run", "--stop-after", "3")
    result = _train_failing(config, tmp_path / "run")
    assert "--resume" in result.stderr


@pytest.mark.parametrize("bad", [{"max_stepz": 3}])
def test_unknown_setting_is_rejected(tmp_path, bad):
    sys.path.insert(0, str(ROOT / "examples"))
    from train import TrainConfig

    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="max_stepz"):
        TrainConfig.load(str(path))


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "typo.yaml",
            "learing_rate: 1.0e-4\n",
            "unknown training settings: 'learing_rate' \\(did you mean 'learning_rate'\\?\\)",
        ),
        ("list.yaml", "- dataset\n", "a training config is a mapping of settings .* got a list"),
        ("broken.yaml", "dataset: [data\n", "not valid YAML"),
        ("broken.json", '{"dataset": ', "not valid JSON"),
        # yaml.safe_load and json.loads kept the last of the two without a word
        (
            "twice.yaml",
            "max_steps: 6\nlearning_rate: 1.0e-3\nmax_steps: 3\n",
            "'max_steps' is given twice in one mapping \\(lines 1 and 3\\): only the last one would count",
        ),
        ("nested.yaml", "model:\n  patch_size: 2\n  patch_size: 4\n", "'patch_size' is given twice .*lines 2 and 3"),
        ("twice.json", '{"max_steps": 6, "max_steps": 3}', "'max_steps' is given twice in one object"),
    ],
)
def test_a_bad_config_file_is_named_without_a_traceback(tmp_path, name, text, message):
    """train.py's main exits with one line naming the file and what is wrong (and the likely fix of a typo)."""
    train = _train_module()
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SystemExit, match=f"^error: {path}: {message}"):
        train.main(["--config", str(path)])
    with pytest.raises(SystemExit, match="missing.yaml: no such config file"):
        train.main(["--config", str(tmp_path / "missing.yaml")])


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_steps: 0", "max_steps must be at least 1, got 0"),
        ("learning_rate: 0", "learning_rate must be > 0"),
        ("ema_decay: 1.0", "ema_decay must be in \\[0, 1\\)"),
        ("decay_start: 1.5", "decay_start must be in \\[0, 1\\]"),
        ("max_batch_frames: -5", "max_batch_frames must be at least 1"),
        ("num_threads: 0", "num_threads must be at least 1"),
        ("single_row_rate: corpus", "single_row_rate must be 'own' or 'model', got 'corpus'"),
        (
            "model:\n  diffusion_time_shif: 3",
            "model.diffusion_time_shif is not a DiTARConfig setting .*'diffusion_time_shift'",
        ),
        # values of the wrong kind raised a TypeError deep in the run, or ran with a rounded number
        ("max_steps: 2.5", "max_steps must be a whole number, got 2.5"),
        ("seed: abc", "seed must be a number, got 'abc'"),
        ("adam_betas: 0.9", "adam_betas must be a list of 2 values, got 0.9"),
        ("adam_betas: [0.9]", "adam_betas must be a list of 2 values"),
        ("num_threads: 1.5", "num_threads must be a whole number"),
        ("gradient_accumulation_steps: 2.5", "gradient_accumulation_steps must be a whole number"),
        ("lora: true", "lora must be a mapping"),
        ("lora: [8]", "lora must be a mapping"),
        ("lora:\n  alphaa: 8", "lora.alphaa is not a LoRA setting \\(did you mean 'alpha'\\?\\)"),
        ("lora:\n  rank: 4\ntrainable_modules: [locdit]", "lora and trainable_modules cannot be combined"),
        ("cudnn_attention: 1", "cudnn_attention must be true or false"),
        # named with a traceback after the corpus was read
        ("max_batch_frames: 100\nmax_example_frames: 200", "max_batch_frames \\(100\\) must be at least max_example"),
        ("model:\n  patch_size: 0", "model: .*patch_size"),
        ("lora:\n  targets: backbone+nothing", "lora.targets: LoRA targets 'backbone\\+nothing'"),
        # transformers' configs keep any keyword: the typo trained a 1-layer backbone without a word
        ("model:\n  text_config:\n    num_hiden_layers: 3", "model.text_config.num_hiden_layers is not a qwen2 config"),
    ],
)
def test_a_setting_that_cannot_work_is_named(tmp_path, text, message):
    train = _train_module()
    path = tmp_path / "cfg.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=message):
        train.TrainConfig.load(str(path))


def test_numbers_written_as_strings_are_read_as_numbers(tmp_path):
    """YAML 1.1 reads `1e-3` (no dot) as a string, which failed deep in the run with a TypeError."""
    train = _train_module()
    path = tmp_path / "cfg.yaml"
    path.write_text(
        'learning_rate: 1e-3\nmax_steps: "100"\npair_prob: "0.5"\nadam_betas: [0.9, "0.95"]\nmixed_precision: no\n'
    )
    cfg = train.TrainConfig.load(str(path))
    assert cfg.learning_rate == 1e-3 and cfg.max_steps == 100 and isinstance(cfg.max_steps, int)
    assert cfg.pair_prob == 0.5 and cfg.adam_betas == (0.9, 0.95) and cfg.mixed_precision == "no"
    path.write_text("model:\n  ctc_loss_weight: 1e-1\n  text_config:\n    rms_norm_eps: 1e-6\n    head_dim: 16\n")
    cfg = train.TrainConfig.load(str(path))  # nested numbers too; head_dim is read by the backbone's code
    assert cfg.model["ctc_loss_weight"] == 0.1 and cfg.model["text_config"]["rms_norm_eps"] == 1e-6


def test_a_batcher_with_no_example_that_fits_is_refused():
    """train.py waited forever, printing nothing, when no utterance fitted max_example_frames."""
    from modeling_ditar.training_data import PairedLengthBatcher

    with pytest.raises(
        ValueError, match="no example can be batched: max_example_frames=10, the shortest example has 40"
    ):
        PairedLengthBatcher([40, 50], ["a", "a"], 100, 10)
    with pytest.raises(ValueError, match="every example that fits has weight 0"):
        PairedLengthBatcher([4, 50], ["a", "a"], 100, 10, weights=[0.0, 1.0])
    batcher = PairedLengthBatcher([4, 50], ["a", "a"], 100, 10)
    assert batcher.too_long == 1 and batcher.epoch(0)


def test_command_line_overrides_that_cannot_work_are_refused_before_anything_is_written(tmp_path):
    """--max-steps -1 used to export the starting weights as a "trained" model after 0 steps; --time-budget-min 0 was
    ignored; an init_from that is not there ended in a Hub-id OSError."""
    train = _train_module()
    path = tmp_path / "cfg.yaml"
    path.write_text(f"dataset: {tmp_path}\n")
    (tmp_path / "dataset_dict.json").write_text("{}")  # looks like a corpus; nothing gets that far
    out = tmp_path / "run"
    base = ["--config", str(path), "--output-dir", str(out)]
    for extra, message in [
        (["--max-steps", "-1"], "--max-steps -1: give at least 1"),
        (["--time-budget-min", "0"], "--time-budget-min 0: give a number of minutes > 0"),
        (["--num-proc", "0"], "--num-proc 0: give at least 1"),
        (["--init-from", str(tmp_path / "nowhere")], "init_from .*nowhere' is not a folder"),
    ]:
        with pytest.raises(SystemExit, match=message):
            train.main([*base, *extra])
    assert not out.exists()


def test_init_from_a_vae_pipeline_is_refused(tmp_path):
    """A pipeline with a VAE trained on the corpus's log-mel frames normalised with the latent statistics (when the
    latent size equalled the mel-bin count) and was then shipped with the VAE; train.py has no path for VAE latents."""
    train = _train_module()
    _tiny_corpus(tmp_path)
    pipeline = tmp_path / "vae_pipeline"
    pipeline.mkdir()
    index = {"_class_name": "DiTARPipeline", "vae": ["diffusers", "AutoencoderOobleck"], "vocoder": [None, None]}
    (pipeline / "model_index.json").write_text(json.dumps(index))
    args = ["--config", str(_config(tmp_path)), "--output-dir", str(tmp_path / "run"), "--init-from", str(pipeline)]
    with pytest.raises(SystemExit, match="is a pipeline with a VAE .* train.py trains on log-mel corpora only"):
        train.main(args)


def test_an_empty_config_means_the_defaults_and_a_missing_corpus_is_named_before_anything_is_written(
    tmp_path, monkeypatch
):
    train = _train_module()
    monkeypatch.chdir(tmp_path)  # the default dataset, data/corpus, is relative: not there
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert train.TrainConfig.load(str(path)) == train.TrainConfig()
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="dataset 'data/corpus' is not a corpus folder .* examples/build_corpus.py"):
        train.main(["--config", str(path), "--output-dir", str(out)])
    assert not out.exists()


def _error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a train.py run that stopped on a corpus problem ends with (no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


def test_transcripts_the_front_end_cannot_speak_are_named_by_split_and_row(tmp_path):
    """A corpus row with text in another script, punctuation or emoji only, or no text built fine, then train.py died
    with the front end's ValueError traceback after loading everything, naming neither the split nor the row."""
    bad = {("train", 5): "你好世界。", ("train", 11): "...", ("train", 17): "", ("train", 20): "🙂🙂"}
    _tiny_corpus(tmp_path, texts=bad)
    line = _error_line(_train_failing(_config(tmp_path), tmp_path / "run"))
    assert line.startswith(f"error: dataset '{tmp_path / 'corpus'}', train split: 4 of 24 rows have a text "), line
    assert "row 5 (file_name 'clips/train-5.wav'): `text` '你好世界。' is written in Han script" in line
    assert "; row 11 (file_name 'clips/train-11.wav'): `text` '...' has nothing to speak" in line
    assert "; row 17 (file_name 'clips/train-17.wav'): `text` is empty" in line and "; and 1 more." in line
    assert "row 20" not in line and line.endswith("rebuild the corpus with examples/build_corpus.py")
    assert not (tmp_path / "run" / "checkpoints").exists()

    # validation rows are named by their row in the split, also when only some of them are used
    from datasets import Dataset

    from modeling_ditar import DiTARFeatureExtractor, DiTARProcessor, build_ditar_tokenizer

    train = _train_module()
    processor = DiTARProcessor(DiTARFeatureExtractor(feature_size=8), build_ditar_tokenizer(phonemize=False))
    split = Dataset.from_dict({"text": ["fine words", "", "more words", "你好"], "speaker_id": ["a"] * 4})
    with pytest.raises(
        ValueError, match=r"^validation split: 2 of 2 rows .*: row 1: `text` is empty.*; row 3: `text` '"
    ):
        train.load_utterances(split.select([1, 3]), processor, None, 1, "validation", [1, 3])
    # the forked workers of a large corpus report every refused text too
    texts = [f"sentence number {i}." for i in range(250)] + ["你好", "..."]
    with pytest.raises(train.UnspeakableTexts) as refused:
        train.encode_texts(processor, texts, num_proc=2)
    assert sorted(refused.value.reasons) == ["...", "你好"] and "Han script" in refused.value.reasons["你好"]


@pytest.mark.parametrize(
    "breakage, message",
    [
        # OSError "Repo id must be in the form 'repo_name'..." on feature_extractor/
        (
            "no features",
            "has no features .*: rebuild it with examples/build_corpus.py and the same options plus --features",
        ),
        (
            "no features, init_from",
            "has no features .*--features \\(and --feature-config JSON with init_from's feature",
        ),
        # KeyError: 'validation'
        ("no validation", "has no validation split \\(its splits: train\\).* --val-fraction F .* --hub-splits train="),
        # FileNotFoundError: a build killed while saving
        (
            "half saved",
            "is incomplete \\(train/dataset_info.json is missing; .*\\): rebuild it with examples/build_corpus",
        ),
        (
            "no feature extractor",
            "is incomplete \\(feature_extractor/preprocessor_config.json is missing.*: rebuild it",
        ),
        # load_from_disk's IndexError
        ("no validation rows", "has no rows in its validation split: rebuild it with examples/build_corpus.py"),
    ],
    ids=["no-features", "no-features-init-from", "no-validation", "half-saved", "no-feature-extractor", "empty-split"],
)
def test_a_corpus_train_cannot_use_is_named_before_anything_is_written(tmp_path, breakage, message):
    import shutil

    train = _train_module()
    _tiny_corpus(tmp_path, splits=("train",) if breakage == "no validation" else ("train", "validation"),
                 features=not breakage.startswith("no features"))  # fmt: skip
    corpus, config, out = tmp_path / "corpus", _config(tmp_path), tmp_path / "run"
    if breakage == "half saved":
        (corpus / "train" / "dataset_info.json").unlink()
    if breakage == "no feature extractor":
        shutil.rmtree(corpus / "feature_extractor")
    if breakage == "no validation rows":
        from datasets import load_from_disk

        data = load_from_disk(str(corpus))
        data["validation"] = data["validation"].select([])
        data.save_to_disk(str(tmp_path / "saved"))
        shutil.rmtree(corpus / "validation")
        (tmp_path / "saved" / "validation").rename(corpus / "validation")
    extra = ["--init-from", str(tmp_path)] if "init_from" in breakage else []  # any folder: nothing gets that far
    with pytest.raises(SystemExit, match=f"^error: dataset {re.escape(repr(str(corpus)))} {message}"):
        train.main(["--config", str(config), "--output-dir", str(out), *extra])
    assert not out.exists()


@pytest.mark.parametrize("trainer", ["train", "train_vocoder"])
def test_mixed_precision_no_in_yaml_means_no_and_a_bad_value_is_named(tmp_path, trainer):
    sys.path.insert(0, str(ROOT / "examples"))
    module = __import__(trainer)
    config = module.TrainConfig if trainer == "train" else module.VocoderTrainConfig
    path = tmp_path / "cfg.yaml"
    path.write_text("mixed_precision: no\n")  # YAML 1.1 reads this as false
    assert config.load(str(path)).mixed_precision == "no"
    path.write_text("mixed_precision: bfloat16\n")
    with pytest.raises(ValueError, match="mixed_precision must be no, fp16, bf16 or fp8"):
        config.load(str(path))


@pytest.mark.slow
def test_two_process_cpu_data_parallel_run(tmp_path):
    """DDP over gloo with 2 CPU processes (examples/scripts/train_ddp_cpu.sh)."""
    _tiny_corpus(tmp_path)
    config = _config(tmp_path)
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "scripts" / "train_ddp_cpu.sh"), str(config), str(tmp_path / "ddp")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(_losses(tmp_path / "ddp")) == list(range(1, 7))
    assert (tmp_path / "ddp" / "final" / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "name", ["accelerate_multigpu.yaml", "accelerate_fsdp2_multinode.yaml", "accelerate_deepspeed_z2.yaml"]
)
def test_accelerate_launch_configs_parse(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "examples" / "configs" / name))
    assert config.num_processes >= 8


@pytest.mark.slow  # 43 s: two training runs and a pack/unpack; the default run stays under 5 minutes without it
def test_resume_pack_round_trip_continues_the_run(tmp_path):
    """A checkpoint packed into small safetensors files (to carry a run across machines in git) resumes the run; the
    only difference is the reduced precision of the EMA and Adam moments."""
    _tiny_corpus(tmp_path)
    config = _config(tmp_path)
    _train(config, tmp_path / "straight")
    _train(config, tmp_path / "first", "--stop-after", "3")
    pack = ROOT / "examples" / "resume_pack.py"
    for args in (
        ["pack", tmp_path / "first" / "checkpoints" / "step-3", tmp_path / "pack"],
        ["unpack", tmp_path / "pack", tmp_path / "second"],
    ):
        result = run_script(
            [sys.executable, str(pack), *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        assert result.returncode == 0, result.stderr[-2000:]
    assert all(p.suffix in {".safetensors", ".json"} for p in (tmp_path / "pack").iterdir())
    _train(config, tmp_path / "second", "--resume")
    straight, second = _losses(tmp_path / "straight"), _losses(tmp_path / "second")
    assert sorted(second) == [4, 5, 6]
    for step in (4, 5, 6):
        assert float(second[step]) == pytest.approx(float(straight[step]), rel=2e-2)
    # a checkpoint's EMA weights as a model folder: at the last step, exactly the run's final model
    result = run_script(
        [
            sys.executable,
            str(pack),
            "ema-model",
            str(tmp_path / "straight" / "checkpoints" / "step-6"),
            str(tmp_path / "ema6"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    from safetensors.torch import load_file

    final, exported = (
        load_file(str(d / "model.safetensors")) for d in (tmp_path / "straight" / "final" / "model", tmp_path / "ema6")
    )
    assert sorted(final) == sorted(exported)
    assert all(torch.equal(final[k], exported[k]) for k in final)
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def test_a_checkpoints_ema_model_samples_with_the_runs_settings(tmp_path):
    """`resume_pack.py ema-model` (the GPU plan's export of a run cut off before its end) rebuilt the model from
    config.json alone: the folder sampled with the library's default steps and guidance, not the run's."""
    sys.path.insert(0, str(ROOT / "examples"))
    from resume_pack import ema_model

    from modeling_ditar import DiTARForConditionalGeneration

    _tiny_corpus(tmp_path)
    config = _config(tmp_path, guidance_scale=1.5, num_inference_steps=4)
    _train(config, tmp_path / "run", "--stop-after", "3")
    out = ema_model(tmp_path / "run" / "checkpoints" / "step-3", tmp_path / "ema3")
    settings = DiTARForConditionalGeneration.from_pretrained(out).generation_config
    assert (settings.guidance_scale, settings.num_inference_steps) == (1.5, 4)


def _train_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", TRAIN)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_script"] = module  # dataclasses look their module up there
    if str(TRAIN.parent) not in sys.path:
        sys.path.insert(0, str(TRAIN.parent))
    spec.loader.exec_module(module)
    return module


def test_time_budget_sizes_the_run_from_the_step_rate(monkeypatch):
    train = _train_module()
    clock = {"now": 1000.0}
    monkeypatch.setattr(train.time, "time", lambda: clock["now"])
    cfg = train.TrainConfig(max_steps=10**6, decay_start=0.6)
    budget = train.TimeBudget(10.0, cfg, start_step=0)  # 600 s
    for step in range(1, 71):  # 2 steps per second
        clock["now"] += 0.5
        budget.update(step)
    # 35 s used, 565 s left at 2 steps/s (minus the 3% margin) -> about 70 + 1096 steps
    assert 1100 < cfg.max_steps < 1200, cfg.max_steps
    for step in range(71, 760):  # same rate: the estimate holds, until the decay phase (0.6 x ~1185) freezes it
        clock["now"] += 0.5
        budget.update(step)
    frozen = cfg.max_steps
    assert 1150 < frozen < 1200 and 759 >= 0.6 * frozen
    for step in range(760, 900):  # now twice as fast: the frozen estimate stays
        clock["now"] += 0.25
        budget.update(step)
    assert cfg.max_steps == frozen
    clock["now"] += 10_000  # past the deadline: the run ends at this step
    budget.update(900)
    assert cfg.max_steps == 900


def test_time_budget_counts_from_the_process_start(monkeypatch):
    """The minutes include train.py's start-up (loading the corpus took minutes on a GPU machine and ran the call over
    its limit): a budget whose start-up already used it all ends at the first step."""
    train = _train_module()
    clock = {"now": 1000.0}
    monkeypatch.setattr(train.time, "time", lambda: clock["now"])
    cfg = train.TrainConfig(max_steps=10**6)
    budget = train.TimeBudget(5.0, cfg, start_step=0, started=clock["now"] - 301)
    budget.update(1)
    assert cfg.max_steps == 1
    cfg = train.TrainConfig(max_steps=10**6, decay_start=0.6)
    budget = train.TimeBudget(10.0, cfg, start_step=0, started=clock["now"] - 300)  # half of it already gone
    for step in range(1, 71):  # 2 steps per second
        clock["now"] += 0.5
        budget.update(step)
    assert 500 < cfg.max_steps < 600, cfg.max_steps  # 265 s left at 2 steps/s (3% margin): about 70 + 514


def _features_dataset(lengths, width=3, num_shards=1):
    from datasets import Dataset, concatenate_datasets

    rows = [
        (torch.arange(n * width, dtype=torch.float32).reshape(n, width) + 100 * i).tolist()
        for i, n in enumerate(lengths)
    ]
    parts = [Dataset.from_dict({"features": rows[i::num_shards]}) for i in range(num_shards)]
    return concatenate_datasets(parts) if num_shards > 1 else parts[0]


@pytest.mark.parametrize("num_shards", [1, 3])
def test_feature_arrays_equal_row_by_row_access(num_shards):
    import numpy as np

    train = _train_module()
    data = _features_dataset([4, 1, 7, 2, 5, 3, 6], num_shards=num_shards)  # several Arrow chunks when sharded
    rows = data.with_format("numpy")
    arrays = train.feature_arrays(data)
    assert len(arrays) == len(data)
    for i, array in enumerate(arrays):
        np.testing.assert_array_equal(array, rows[i]["features"])
    picked = data.select([5, 0, 6])  # an indices mapping, as for the validation utterances
    for array, i in zip(train.feature_arrays(picked), [5, 0, 6], strict=True):
        np.testing.assert_array_equal(array, rows[i]["features"])


def test_feature_arrays_reject_ragged_frames_and_missing_rows():
    from datasets import Dataset

    train = _train_module()
    ragged = Dataset.from_dict({"features": [[[1.0, 2.0], [3.0]], [[4.0, 5.0]]]})
    with pytest.raises(ValueError, match="mixes frames of 1 and 2 values"):
        train.feature_arrays(ragged)
    missing = Dataset.from_dict({"features": [[[1.0, 2.0]], None]})
    with pytest.raises(ValueError, match="missing values"):
        train.feature_arrays(missing)


def test_parallel_text_encoding_equals_serial():
    from modeling_ditar import DiTARFeatureExtractor, DiTARProcessor, build_ditar_tokenizer

    train = _train_module()
    processor = DiTARProcessor(DiTARFeatureExtractor(feature_size=8), build_ditar_tokenizer(phonemize=False))
    texts = [f"sentence number {i}, said twice." for i in range(250)] * 2
    serial = train.encode_texts(processor, texts, num_proc=1)
    parallel = train.encode_texts(processor, texts, num_proc=2)
    assert serial == parallel and len(serial) == 250
    assert serial[texts[3]] == processor.encode_text(texts[3])


CONFIG_DIRS = (ROOT / "examples" / "configs", ROOT / "examples" / "research" / "configs")
TRAIN_CONFIGS = sorted(
    str(p.relative_to(ROOT / "examples"))
    for d in CONFIG_DIRS
    for p in d.glob("*.yaml")
    # accelerate launch configs, and the vocoder's and the LocDiT distillation's own configs (tested with their scripts)
    if not p.name.startswith(("accelerate", "vocoder-", "distill-"))
)


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_every_training_config_loads(name):
    """Every shipped run config parses into TrainConfig, builds a valid model config, and names an existing
    init_from."""
    sys.path.insert(0, str(ROOT / "examples"))
    from train import TrainConfig

    from modeling_ditar import DiTARConfig

    path = ROOT / "examples" / name
    cfg = TrainConfig.load(str(path))
    if cfg.init_from and cfg.init_from.startswith("runs/"):  # made first by a command in the config's header
        header = [line for line in path.read_text().splitlines() if line.startswith("#")]
        assert any(cfg.init_from in line and "python " in line for line in header), cfg.init_from
    elif cfg.init_from:
        assert (ROOT / cfg.init_from).is_dir(), cfg.init_from
    else:
        DiTARConfig(**cfg.model)
    assert 0 < cfg.warmup_steps < cfg.max_steps and 0 <= cfg.decay_start <= 1


def test_cudnn_attention_is_off_for_training_on_cuda_unless_asked(monkeypatch):
    train = _train_module()
    before = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        torch.backends.cuda.enable_cudnn_sdp(True)
        train.configure_attention(train.TrainConfig())
        assert torch.backends.cuda.cudnn_sdp_enabled()  # a CPU run leaves the global setting alone
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        train.configure_attention(train.TrainConfig())
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        train.configure_attention(train.TrainConfig(cudnn_attention=True))
        assert torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)


def test_profile_training_step_prints_the_phases(tmp_path):
    _tiny_corpus(tmp_path)
    result = run_script(
        [
            sys.executable,
            str(ROOT / "examples" / "research" / "profile_training_step.py"),
            "--config",
            str(_config(tmp_path)),
            "--steps",
            "2",
            "--warmup",
            "1",
            "--profile-steps",
            "1",
            "--top",
            "5",
            "--cudnn-attention",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "cuDNN attention off" in out
    for phase in ("collate", "to device", "forward", "backward", "optimizer", "ema"):
        assert f"| {phase} | " in out
    assert "steps/s" in out and "torch.profiler, 1 steps" in out
    assert not (tmp_path / "runs").exists()  # nothing is saved


def _utterances(count: int, speakers: list[str], frames=(9, 13, 10, 16, 11, 12)):
    from modeling_ditar.training_data import Utterance

    generator = torch.Generator().manual_seed(0)
    return [
        Utterance(
            token_ids=[5 + i, 6 + i, 7],
            features=torch.randn(frames[i % len(frames)], 8, generator=generator),
            speaker=speakers[i % len(speakers)],
        )
        for i in range(count)
    ]


def test_continuation_text_use_gap_swaps_only_the_target_text_and_scores_only_the_target(monkeypatch):
    sys.path.insert(0, str(ROOT / "examples"))
    import training_eval
    from model_helpers import DiTARModelTester

    model = DiTARModelTester().get_model().eval()  # patch size 2, 8 features
    utterances = _utterances(4, ["a", "b"])  # partners: 0 <-> 2 (speaker a), 1 <-> 3 (speaker b)
    seen = []
    real = training_eval.x0_error_at_t1

    def spy(model, batch, select=None):
        seen.append((batch, select))
        return real(model, batch, select)

    monkeypatch.setattr(training_eval, "x0_error_at_t1", spy)
    gap = training_eval.continuation_text_use_gap(model, utterances, pad_id=0, space_ids=[3])
    assert gap["penalty"] == pytest.approx(gap["wrong"] / gap["right"] - 1) and gap["right"] > 0
    (right, select), (wrong, select_wrong) = seen
    assert torch.equal(select, select_wrong)
    partners, donors = [2, 3, 0, 1], [1, 2, 3, 0]
    for row in range(4):
        prompt = utterances[partners[row]]
        n_right, n_wrong = int(right["attention_mask"][row].sum()), int(wrong["attention_mask"][row].sum())
        assert right["input_ids"][row, :n_right].tolist() == prompt.token_ids + [3] + utterances[row].token_ids
        assert wrong["input_ids"][row, :n_wrong].tolist() == prompt.token_ids + [3] + utterances[donors[row]].token_ids
        first_target_patch = -(-prompt.features.shape[0] // 2)  # patches touching the prompt are not scored
        assert not select[row, :first_target_patch].any() and select[row, first_target_patch:].all()
    assert torch.equal(right["speech_features"], wrong["speech_features"])
    with pytest.raises(ValueError, match="at least 2"):
        training_eval.continuation_text_use_gap(model, utterances[:1], pad_id=0)


def test_training_eval_cli_prints_both_gaps(tmp_path):
    _tiny_corpus(tmp_path)
    config = _config(tmp_path)
    _train(config, tmp_path / "run")
    result = run_script(
        [
            sys.executable,
            str(ROOT / "examples" / "training_eval.py"),
            "--model",
            str(tmp_path / "run" / "final"),
            "--dataset",
            str(tmp_path / "corpus"),
            "--num-utterances",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "single utterances: x0-MSE" in result.stdout and "prompt + target: x0-MSE" in result.stdout


def test_text_use_utterances_are_spread_over_the_voices():
    sys.path.insert(0, str(ROOT / "examples"))
    from training_eval import spread_rows

    rows = spread_rows(496, 64)
    assert len(rows) == 64 and rows[0] == 0 and rows[-1] == 495 and rows == sorted(set(rows))
    assert max(b - a for a, b in zip(rows, rows[1:], strict=False)) <= 8  # every voice of 25 rows is visited
    assert spread_rows(4, 64) == [0, 1, 2, 3] and spread_rows(10, 1) == [0]


_KILLED_DURING_CHECKPOINT = """
import importlib.util, os, signal, sys
from pathlib import Path
from accelerate import Accelerator

sys.path.insert(0, os.path.dirname(sys.argv[1]))  # as when train.py runs as a script
spec = importlib.util.spec_from_file_location("train", sys.argv[1])
train = sys.modules["train"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)
save_state, victim = Accelerator.save_state, os.environ["KILL_WRITING"]

def save_state_then_die(self, output_dir=None, **kwargs):
    result = save_state(self, output_dir, **kwargs)
    if Path(output_dir).name == victim:  # cut the write short, as a kill -9 in the middle of it would
        biggest = max((p for p in Path(output_dir).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        os.truncate(biggest, biggest.stat().st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return result

Accelerator.save_state = save_state_then_die
train.main(sys.argv[2:])
"""


def test_kill_during_checkpoint_write_resumes_from_the_last_complete_one(straight_run):
    """The fault drill: kill -9 while step-6's checkpoint is being written. The half-written folder never becomes a
    checkpoint, `--resume` continues from step-3 (the last complete one) and the loss curve goes on as in a run that was
    never interrupted."""
    tmp_path, config = straight_run
    run = tmp_path / "killed"
    wrapper = tmp_path / "killed_during_checkpoint.py"
    wrapper.write_text(_KILLED_DURING_CHECKPOINT)
    killed = run_script(
        [
            sys.executable,
            str(wrapper),
            str(TRAIN),
            "--config",
            str(config),
            "--output-dir",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "KILL_WRITING": ".tmp-step-6"},
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [".tmp-step-6", "step-3"]  # the torn write is left aside, never renamed to step-6
    resumed = _train(config, run, "--resume")
    assert f"resumed from {run / 'checkpoints' / 'step-3'}" in resumed.stdout
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-3", "step-6"]
    straight, interrupted = _losses(tmp_path / "straight"), _losses(run)
    assert {step: interrupted[step] for step in range(1, 7)} == straight
    assert (run / "final" / "model" / "model.safetensors").is_file()


def test_lora_run_trains_only_the_adapter_and_resumes(straight_run):
    """`lora:` in the config: the adapter alone is optimised, averaged and checkpointed; an interrupted run resumes with
    the same losses as an uninterrupted one and writes final/adapter (the base model of init_from is untouched)."""
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    from modeling_ditar import DiTARForConditionalGeneration

    tmp_path, config = straight_run
    data = json.loads(config.read_text())
    data["init_from"] = str(tmp_path / "straight" / "final")  # model/ and processor/
    data["lora"] = {"rank": 2, "alpha": 4, "targets": "backbone+locdit"}
    data["learning_rate"] = 1e-2
    lora_config = tmp_path / "lora.json"
    lora_config.write_text(json.dumps(data))
    _train(lora_config, tmp_path / "lora-straight")
    _train(lora_config, tmp_path / "lora-resumed", "--stop-after", "3")
    assert "resumed from" in _train(lora_config, tmp_path / "lora-resumed", "--resume").stdout
    straight, resumed = _losses(tmp_path / "lora-straight"), _losses(tmp_path / "lora-resumed")
    assert {s: resumed[s] for s in range(4, 7)} == {s: straight[s] for s in range(4, 7)}

    final = tmp_path / "lora-straight" / "final"
    assert not (final / "model").exists()
    adapter = load_file(str(final / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in key for key in adapter)
    summary = json.loads((tmp_path / "lora-straight" / "adapter_summary.json").read_text())
    assert summary["adapter_parameters"] == sum(t.numel() for t in adapter.values()) and summary["fraction"] < 0.5
    base = DiTARForConditionalGeneration.from_pretrained(tmp_path / "straight" / "final" / "model")
    adapted = DiTARForConditionalGeneration.from_pretrained(tmp_path / "straight" / "final" / "model")
    adapted.load_adapter(final / "adapter", adapter_name="tuned")
    inputs = {k: v[:1] for k, v in _tiny_batch(base).items()}
    torch.manual_seed(0)
    before = base(**inputs).loss
    torch.manual_seed(0)
    assert not torch.equal(adapted(**inputs).loss, before)  # the adapter's B matrices were trained away from zero
    adapted.unload_adapters()
    torch.manual_seed(0)
    assert torch.equal(adapted(**inputs).loss, before)


def test_trainable_modules_train_only_those_and_leave_the_rest_as_init_from(straight_run):
    """`trainable_modules: [locdit]`: LocDiT's weights move, every other weight of the final model is init_from's
    exactly; a name that is not a module of the model stops the run with the names to pick from."""
    from safetensors.torch import load_file

    tmp_path, config = straight_run
    data = json.loads(config.read_text())
    data["init_from"] = str(tmp_path / "straight" / "final")
    data["trainable_modules"] = ["locdit"]
    data["learning_rate"] = 1e-2
    partial = tmp_path / "locdit-only.json"
    partial.write_text(json.dumps(data))
    out = _train(partial, tmp_path / "locdit-only")
    assert "trainable_modules ['locdit']" in out.stdout
    before = load_file(str(tmp_path / "straight" / "final" / "model" / "model.safetensors"))
    after = load_file(str(tmp_path / "locdit-only" / "final" / "model" / "model.safetensors"))
    assert before.keys() == after.keys()
    moved = {key for key in before if not torch.equal(before[key], after[key])}
    assert moved and all(key.startswith("locdit.") for key in moved)
    # its last checkpoint becomes the same model: the EMA holds LocDiT's parameters only (it used to be refused as
    # "written for another model config")
    sys.path.insert(0, str(ROOT / "conversion"))
    import checkpoint_to_pipeline

    checkpoint_to_pipeline.main([str(tmp_path / "locdit-only"), str(tmp_path / "locdit-only-pipeline")])
    converted = load_file(str(tmp_path / "locdit-only-pipeline" / "model" / "model.safetensors"))
    assert all(torch.equal(converted[key].float(), after[key].float()) for key in after)

    data["trainable_modules"] = ["locdit", "decoder"]
    partial.write_text(json.dumps(data))
    failed = _train_failing(partial, tmp_path / "bad")
    assert "['decoder'] are not modules of the model" in failed.stderr
    # the same backbone settings as init_from's pass (above); other ones were dropped without a word
    data["trainable_modules"] = ["locdit"]
    data["model"]["text_config"]["num_hidden_layers"] = 3
    partial.write_text(json.dumps(data))
    failed = _train_failing(partial, tmp_path / "bad-backbone")
    assert "model.text_config {'num_hidden_layers': 3} differs from init_from's backbone" in failed.stderr


def _tiny_batch(model):
    generator = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(1, 20, (1, 5), generator=generator),
        "attention_mask": torch.ones(1, 5, dtype=torch.long),
        "speech_features": torch.randn(1, 8, model.config.feature_dim, generator=generator),
        "speech_attention_mask": torch.ones(1, 8, dtype=torch.long),
    }


def test_source_weights_give_per_utterance_weights_and_log_the_shares():
    import torch
    from datasets import Dataset

    train_module = _train_module()
    split = Dataset.from_dict({"source": ["espeak", "espeak", "piper", "kokoro"]})
    utts = [train_module.Utterance([1], torch.zeros(n, 2), "s") for n in (100, 100, 50, 50)]
    lines = []
    weights = train_module.source_weights(split, {"piper": 4, "kokoro": 2}, utts, lines.append)
    assert weights == [1.0, 1.0, 4.0, 2.0]
    assert "piper 16.7% -> 40.0%" in lines[0] and "espeak 66.7% -> 40.0%" in lines[0]
    assert train_module.source_weights(split, None, utts) is None
    with pytest.raises(ValueError, match="festival"):
        train_module.source_weights(split, {"festival": 3}, utts)
    with pytest.raises(ValueError, match=">= 0"):
        train_module.source_weights(split, {"piper": -1}, utts)
    with pytest.raises(ValueError, match="source"):
        train_module.source_weights(Dataset.from_dict({"text": ["a"] * 4}), {"piper": 2}, utts)


def test_source_shares_count_only_the_utterances_that_fit_max_example_frames():
    """The logged shares counted utterances longer than max_example_frames, which never train: 84.2% logged for a
    source whose share of the trained frames was 66.7%."""
    from datasets import Dataset

    from modeling_ditar.training_data import PairedLengthBatcher

    train_module = _train_module()
    lengths = [300] * 100 + [600] * 50 + [1000] * 50  # half of source L is too long for 800 frames
    sources = ["S"] * 100 + ["L"] * 100
    utts = [
        train_module.Utterance([1], torch.zeros(n, 1), f"{s}{i % 10}")
        for i, (n, s) in enumerate(zip(lengths, sources, strict=True))
    ]
    lines = []
    weights = train_module.source_weights(Dataset.from_dict({"source": sources}), {"L": 2}, utts, lines.append, 800)
    assert "L 50.0% -> 66.7%" in lines[0] and "S 50.0% -> 33.3%" in lines[0] and "max_example_frames=800" in lines[0]
    batcher = PairedLengthBatcher(lengths, [u.speaker for u in utts], 4000, 800, 0.0, 0, weights=weights)
    trained = {"S": 0, "L": 0}
    for index, _ in (pair for batch in batcher.epoch(0) for pair in batch):
        trained[sources[index]] += lengths[index]
    assert round(100 * trained["L"] / sum(trained.values()), 1) == 66.7  # what the line says


def _resumed_state(train, saved: dict, num_processes: int = 1, **changed):
    state = train.TrainState(train.TrainConfig(**changed), num_processes)
    state.load_state_dict(saved)
    return state


@pytest.mark.parametrize(
    "changed",
    [
        {"max_batch_frames": 4000},
        {"max_example_frames": 400},
        {"pair_prob": 0.3},
        {"seed": 1},
        {"source_weights": {"piper": 3}},
        {"num_processes": 2},
    ],
)
def test_a_resume_within_an_epoch_with_another_data_plan_is_refused_by_name(changed):
    """batch_in_epoch indexes the batches those settings plan: resumed with others, the run skipped part of the epoch
    without a word (1,018 of 2,000 utterances unseen in an epoch after max_batch_frames 1600 -> 3200)."""
    train = _train_module()
    state = train.TrainState(train.TrainConfig(max_batch_frames=2000, source_weights={"piper": 2}), 1)
    state.epoch, state.batch_in_epoch = 3, 17
    saved = state.state_dict()
    settings = {"max_batch_frames": 2000, "source_weights": {"piper": 2}}
    train.check_data_plan(_resumed_state(train, saved, **settings))  # the same settings resume
    num_processes = changed.pop("num_processes", 1)
    name = next(iter(changed), "num_processes")
    resumed = _resumed_state(train, saved, num_processes, **settings | changed)
    with pytest.raises(ValueError, match=rf"batch 17 of epoch 3.*{name} .*Resume with the run's settings"):
        train.check_data_plan(resumed)
    at_epoch_start = dict(saved, batch_in_epoch=0)  # nothing to skip: any settings go
    train.check_data_plan(_resumed_state(train, at_epoch_start, num_processes, **settings | changed))
    old = {k: v for k, v in saved.items() if k != "data_plan"}  # a checkpoint from before the plan was saved
    train.check_data_plan(_resumed_state(train, old, num_processes, **settings | changed))


def test_resume_with_another_max_batch_frames_stops_before_training(straight_run):
    tmp_path, config = straight_run
    run = tmp_path / "replanned"
    _train(config, run, "--stop-after", "3")  # its checkpoint: step 3, within the first epoch
    changed = tmp_path / "replanned.json"
    changed.write_text(json.dumps(json.loads(config.read_text()) | {"max_batch_frames": 240}))
    result = _train_failing(changed, run, "--resume")
    assert "--resume: the checkpoint stopped at batch 3 of epoch 0" in result.stderr
    assert "max_batch_frames 120 (now 240)" in result.stderr and "Traceback" not in result.stderr
    assert json.loads((run / "train_config.json").read_text())["max_batch_frames"] == 120  # left as the run's


def test_gpu_session_script_parses_and_its_model_config_loads():
    import subprocess

    assert subprocess.run(["bash", "-n", str(ROOT / "examples/scripts/gpu_session.sh")], check=False).returncode == 0
    cfg = _train_module().TrainConfig.load(str(ROOT / "examples/configs/default-gpu-natural.yaml"))
    assert cfg.source_weights == {"piper": 5, "kokoro": 5, "festival": 5} and cfg.init_from == "modeling_ditar/default"


def _growth_script_and_base(name: str, tmp_path):
    """examples/research/NAME.py loaded as a module, and a tiny pipeline with a candidate LocDiT saved as the base."""
    import importlib.util

    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "examples" / "research"))
    from pipeline_helpers import get_dummy_pipeline

    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / "research" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pipe = get_dummy_pipeline(candidate_locdit=True)
    pipe.model.generation_config.candidate_num_inference_steps = 1
    pipe.save_pretrained(tmp_path / "base")
    return script, pipe, tmp_path / "base"


def test_grow_backbone_appends_identity_layers_and_speaks_the_same(tmp_path):
    """examples/research/grow_backbone.py: the grown backbone has the new layers, its outputs are the original's, the
    saved pipeline loads with them and speaks exactly the same audio (candidate LocDiT and its steps kept)."""
    from pipeline_helpers import get_dummy_inputs

    from modeling_ditar import DiTARPipeline

    grow, pipe, base = _growth_script_and_base("grow_backbone", tmp_path)
    layers = pipe.model.config.text_config.num_hidden_layers
    grown = grow.grow_backbone(pipe.model, layers + 2)
    assert grown.config.text_config.num_hidden_layers == layers + 2 and len(grown.language_model.layers) == layers + 2
    assert grown.candidate_locdit is not None and grown.generation_config.candidate_num_inference_steps == 1
    assert grow.check_same_prediction(pipe.model, grown) < 1e-6
    with pytest.raises(SystemExit, match="give more"):
        grow.grow_backbone(pipe.model, layers)
    grow.main([str(base), str(tmp_path / "grown"), "--layers", str(layers + 1)])
    loaded = DiTARPipeline.from_pretrained(tmp_path / "grown")
    loaded.set_progress_bar_config(disable=True)
    assert len(loaded.model.language_model.layers) == layers + 1
    original = DiTARPipeline.from_pretrained(base)
    original.set_progress_bar_config(disable=True)
    import numpy as np

    np.testing.assert_allclose(
        loaded(**get_dummy_inputs(max_new_patches=8)).audios[0],
        original(**get_dummy_inputs(max_new_patches=8)).audios[0],
        atol=1e-6,
        rtol=0,
    )


def test_grow_locdit_appends_identity_blocks_and_keeps_the_prediction(tmp_path):
    """examples/research/grow_locdit.py: the grown LocDiT has the new blocks, predicts what the original did, drops
    the candidate LocDiT and its step count, and the saved pipeline loads with the deeper LocDiT."""
    from modeling_ditar import DiTARPipeline

    grow, pipe, base = _growth_script_and_base("grow_locdit", tmp_path)
    layers = pipe.model.config.locdit_num_layers
    grown = grow.grow_locdit(pipe.model, layers + 2)
    assert grown.config.locdit_num_layers == layers + 2 and grown.candidate_locdit is None
    assert grown.generation_config.candidate_num_inference_steps is None
    assert pipe.model.generation_config.candidate_num_inference_steps == 1  # the original is left as it was
    assert grow.check_same_prediction(pipe.model, grown) < 1e-5
    with pytest.raises(SystemExit, match="give more"):
        grow.grow_locdit(pipe.model, layers)
    grow.main([str(base), str(tmp_path / "grown"), "--layers", str(layers + 1)])
    loaded = DiTARPipeline.from_pretrained(tmp_path / "grown")
    assert len(loaded.model.locdit.transformer.blocks) == layers + 1


def test_a_corpus_with_other_feature_settings_than_init_from_is_refused_by_name(straight_run):
    """The embedded default (16 kHz, 80 mel bins) on the tiny corpus's features failed deep inside the model with a
    shape error, in train.py and in training_eval.py alike."""
    train = _train_module()  # puts examples/ on the path
    import training_eval

    tmp_path, config = straight_run
    corpus = Path(json.loads(config.read_text())["dataset"])
    same = train.TrainConfig(init_from=str(tmp_path / "straight" / "final"))
    train.load_model_and_processor(same, corpus)  # the run's own features: accepted
    other = train.TrainConfig(init_from=str(ROOT / "modeling_ditar" / "default"))
    with pytest.raises(
        ValueError, match=r"other settings than .*default's feature extractor: feature_size 8 \(model: 80\), hop_length"
    ):
        train.load_model_and_processor(other, corpus)
    with pytest.raises(ValueError, match="examples/configs/features_16k_80mel.json"):
        training_eval.main(["--model", str(ROOT / "modeling_ditar" / "default"), "--dataset", str(corpus)])


def test_one_validation_utterance_measures_no_text_use_instead_of_a_false_zero(tmp_path, monkeypatch, capsys):
    """With one validation utterance the wrong transcript was its own (a roll of one row), and the log said the
    model did not use the text at all (+0.0%)."""
    sys.path.insert(0, str(ROOT / "examples"))
    import train
    from model_helpers import DiTARModelTester

    monkeypatch.setattr(train, "write_validation_sample", lambda *args, **kwargs: None)
    model = DiTARModelTester().get_model().eval()
    train._evaluate_ema(model, None, _utterances(1, ["a"]), 0, [3], tmp_path, step=2)
    assert "text use not measured (one validation utterance" in capsys.readouterr().out
    assert not (tmp_path / "text_use.csv").exists()
    train._evaluate_ema(model, None, _utterances(2, ["a"]), 0, [3], tmp_path, step=4)
    printed = capsys.readouterr().out
    assert re.search(r"wrong text \S+ \([+-]\d+\.\d%; prompt \+ target [+-]\d+\.\d%\)", printed), printed
    assert (tmp_path / "text_use.csv").read_text().startswith("4,")


def test_a_time_budget_that_cannot_resize_the_run_says_so():
    """`--time-budget-min` on a run shorter than its first estimate, or whose decay starts before it, kept the
    config's max_steps without a word, though the docs say it sets max_steps from the measured step rate."""
    sys.path.insert(0, str(ROOT / "examples"))
    import train

    def note(max_steps: int, decay_start: float) -> list[str]:
        cfg = train.TrainConfig(dataset="unused", max_steps=max_steps, decay_start=decay_start)
        said = []
        train.TimeBudget(10, cfg, 0, state=train.TrainState(cfg)).note_if_it_cannot_resize(0, said.append)
        return said

    assert "keeps max_steps 40" in note(40, 0.5)[0]
    assert "starts at step 50" in note(1000, 0.05)[0]
    assert note(100000, 0.5) == []
