"""Few-step LocDiT distillation (examples/distill_locdit.py): a tiny run trains, resumes to the same weights, and
writes a pipeline that samples with K unguided LocDiT calls per patch; folded guidance refuses a second guidance."""

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from modeling_ditar import DiTARPipeline
from modeling_ditar.generation_ditar import DiTARGenerationConfig, resolve_generation_settings
from modeling_ditar.sampling import GuidedVelocity, PatchSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import distill_locdit  # noqa: E402
from pipeline_helpers import FEATURE_DIM, get_dummy_pipeline  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "examples" / "configs" / "distill-tiny.yaml"


def _tiny_corpus(directory: Path) -> Path:
    from datasets import Dataset, DatasetDict

    generator = torch.Generator().manual_seed(0)
    words = ["hello world", "a small test", "speech is fun", "more words here"]

    def split(num):
        rows = {"features": [], "text": [], "speaker_id": []}
        for i in range(num):
            rows["features"].append((torch.randn(12 + 4 * (i % 3), FEATURE_DIM, generator=generator) - 4).tolist())
            rows["text"].append(words[i % len(words)])
            rows["speaker_id"].append(f"spk{i % 2}")
        return Dataset.from_dict(rows)

    DatasetDict({"train": split(8)}).save_to_disk(str(directory / "corpus"))
    return directory / "corpus"


@pytest.fixture(scope="module")
def teacher_and_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distill")
    pipe = get_dummy_pipeline(seed=0)
    pipe.model.generation_config.guidance_scale = 1.5
    pipe.save_pretrained(folder / "teacher")
    return folder / "teacher", _tiny_corpus(folder)


def _run(teacher_and_corpus, out: Path, *extra: str):
    teacher, corpus = teacher_and_corpus
    argv = ["--config", str(TINY), "--teacher", str(teacher), "--corpus", str(corpus), "--output-dir", str(out)]
    return distill_locdit.main([*argv, "--pairs-dir", str(out.parent / "pairs"), *extra])


@pytest.fixture(scope="module")
def full_run(teacher_and_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    target = _run(teacher_and_corpus, out)
    return out, target


def test_run_logs_finite_losses_and_a_held_out_error(full_run):
    out, _ = full_run
    state = torch.load(out / distill_locdit.CHECKPOINT, weights_only=False)
    assert state["step"] == 6
    losses = [entry["loss"] for entry in state["log"]]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    assert torch.isfinite(torch.tensor(state["final_valid_mse"]))
    assert set(state["baseline"]) == {"undistilled_guided", "initial"}


def test_resume_gives_the_uninterrupted_weights(teacher_and_corpus, full_run, tmp_path, monkeypatch):
    out = tmp_path / "run"
    (tmp_path / "pairs").symlink_to(full_run[0].parent / "pairs")  # the same teacher endpoints, not recomputed
    calls, real_loss = [], distill_locdit.student_loss

    def crash_at_step_5(*args, **kwargs):  # a kill after the step-3 checkpoint, with step 4 done and lost
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(distill_locdit, "student_loss", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        _run(teacher_and_corpus, out)
    assert torch.load(out / distill_locdit.CHECKPOINT, weights_only=False)["step"] == 3
    monkeypatch.setattr(distill_locdit, "student_loss", real_loss)
    _run(teacher_and_corpus, out)
    resumed = torch.load(out / distill_locdit.CHECKPOINT, weights_only=False)
    whole = torch.load(full_run[0] / distill_locdit.CHECKPOINT, weights_only=False)
    assert resumed["step"] == 6
    assert [e["loss"] for e in resumed["log"]] == pytest.approx([e["loss"] for e in whole["log"]], rel=1e-5)
    for key, value in whole["student"].items():
        torch.testing.assert_close(resumed["student"][key], value)


def test_loss_decreases_on_a_fixed_batch(teacher_and_corpus, full_run):
    pipe = DiTARPipeline.from_pretrained(str(teacher_and_corpus[0]))
    pairs = distill_locdit.load_pairs(sorted((full_run[0].parent / "pairs").glob("shard-*.pt")))
    student = pipe.model.locdit.float().train()
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    rows = torch.arange(min(32, pairs["target"].shape[0]))
    losses = []
    for _ in range(8):
        loss = distill_locdit.student_loss(student, pairs, rows, 2, 0.5, "cpu")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_teacher_endpoints_are_the_pipeline_sampler(teacher_and_corpus):
    """`solve` with an explicit draw is the generation sampler fed the same draw by its generator."""
    locdit = DiTARPipeline.from_pretrained(str(teacher_and_corpus[0])).model.locdit
    dim, patch = locdit.in_proj.in_features, locdit.patch_size
    frames = locdit.transformer.position_embedding.shape[0] - 1 - patch  # K history patches x P frames
    generator = torch.Generator().manual_seed(3)
    cond = torch.randn(5, locdit.cond_proj.in_features, generator=generator)
    history = torch.randn(5, frames, dim, generator=generator)
    mask = torch.ones(5, frames, dtype=torch.bool)
    mask[0, :patch] = False
    contexts = {"cond": cond, "history": history, "history_mask": mask}
    with torch.no_grad():
        noise = torch.randn(5, patch, dim, generator=torch.Generator().manual_seed(9))
        ours = distill_locdit.solve(locdit, contexts, noise, 4, 1.5, 0.5)
        velocity = GuidedVelocity(locdit, cond, history, mask, 1.5)
        reference = PatchSampler().sample(
            velocity, tuple(noise.shape), 4, 0.5, generator=torch.Generator().manual_seed(9)
        )
    torch.testing.assert_close(ours, reference)
    with pytest.raises(ValueError, match="noise must have the sample's shape"):
        PatchSampler().sample(velocity, (5, patch, dim + 1), 4, 0.5, noise=noise)


def test_written_pipeline_samples_with_k_unguided_calls(full_run):
    pipe = DiTARPipeline.from_pretrained(str(full_run[1]))
    pipe.set_progress_bar_config(disable=True)
    generation = pipe.model.generation_config
    assert generation.num_inference_steps == 2
    assert generation.guidance_scale == 1.0 and generation.distilled_guidance_scale == 1.5
    calls = []
    pipe.model.locdit.register_forward_hook(lambda module, args, out: calls.append(out.shape[0]))
    out = pipe("hello world", max_new_patches=3, num_candidates=1, generator=torch.Generator().manual_seed(0))
    assert out.audios[0].shape[-1] > 0
    assert calls == [1] * 6  # 3 patches x K=2 steps, one row each: no unconditional branch
    # the multi-step sampler stays available
    calls.clear()
    pipe("hello world", max_new_patches=2, num_candidates=1, num_inference_steps=5)
    assert len(calls) == 10


def test_student_folder_rebuilds_the_written_pipeline(teacher_and_corpus, full_run, tmp_path):
    out, target = full_run
    student = out / "student"
    assert sorted(p.name for p in student.iterdir()) == ["generation_config.json", "locdit.safetensors"]
    teacher, corpus = teacher_and_corpus
    argv = ["--config", str(TINY), "--teacher", str(teacher), "--corpus", str(corpus)]
    rebuilt = distill_locdit.main([*argv, "--output-dir", str(tmp_path / "rebuilt"), "--assemble", str(student)])
    written, assembled = DiTARPipeline.from_pretrained(str(target)), DiTARPipeline.from_pretrained(str(rebuilt))
    assert assembled.model.generation_config.to_dict() == written.model.generation_config.to_dict()
    assembled_state = assembled.model.state_dict()
    assert list(assembled_state) == list(written.model.state_dict())
    for (name, want), got in zip(written.model.state_dict().items(), assembled_state.values(), strict=True):
        if name.startswith("locdit."):  # LocDiT travels in float16; everything else is the teacher's
            want = want.half().to(want.dtype)
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)
    with pytest.raises(SystemExit, match="error: .* has no locdit.safetensors"):
        distill_locdit.main([*argv, "--output-dir", str(tmp_path / "x"), "--assemble", str(tmp_path)])
    with pytest.raises(SystemExit, match="error: --assemble .*missing: no such folder"):
        distill_locdit.main([*argv, "--output-dir", str(tmp_path / "x"), "--assemble", str(tmp_path / "missing")])
    other = tmp_path / "other_teacher"
    get_dummy_pipeline(seed=0, locdit_hidden_size=48).save_pretrained(other)
    argv[argv.index("--teacher") + 1] = str(other)
    with pytest.raises(SystemExit, match="error: The student in .* does not fit the LocDiT of the teacher"):
        distill_locdit.main([*argv, "--output-dir", str(tmp_path / "y"), "--assemble", str(student)])


def test_assemble_keeps_an_existing_pipeline_needs_no_corpus_and_refuses_training_options(
    teacher_and_corpus, full_run, tmp_path
):
    student, teacher = full_run[0] / "student", teacher_and_corpus[0]
    argv = ["--config", str(TINY), "--teacher", str(teacher), "--assemble", str(student)]
    out = tmp_path / "out"
    target = distill_locdit.main([*argv, "--output-dir", str(out)])  # the config names no corpus: none needed
    assert (target / "model_index.json").is_file()
    before = (target / "model" / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(SystemExit, match=f"error: {target} already exists .* give another --output-dir"):
        distill_locdit.main([*argv, "--output-dir", str(out)])
    assert (target / "model" / "model.safetensors").stat().st_mtime_ns == before
    for extra in (["--pairs-only"], ["--student-steps", "1"], ["--max-steps", "3"], ["--time-budget-min", "5"]):
        with pytest.raises(SystemExit, match=f"error: --assemble .* so {extra[0]} would do nothing"):
            distill_locdit.main([*argv, "--output-dir", str(tmp_path / "other"), *extra])
    assert not (tmp_path / "other").exists()


def test_a_guided_student_learns_through_guidance_and_keeps_it(teacher_and_corpus, full_run, tmp_path, monkeypatch):
    """With `student_guidance_scale` the loss is taken on the student's guided patch (both branches), rounds
    generate with it, and the written pipeline samples with it: one call of two rows per step."""
    (tmp_path / "pairs").symlink_to(full_run[0].parent / "pairs")  # the same teacher endpoints
    scales, real_solve = [], distill_locdit.solve

    def spy(locdit, contexts, noise, steps, guidance_scale, temperature):
        if torch.is_grad_enabled():
            scales.append(guidance_scale)
        return real_solve(locdit, contexts, noise, steps, guidance_scale, temperature)

    monkeypatch.setattr(distill_locdit, "solve", spy)
    target = _run(teacher_and_corpus, tmp_path / "run", "--student-guidance-scale", "1.5")
    assert scales == [1.5] * 6  # every training step, through the guided combination
    state = torch.load(tmp_path / "run" / distill_locdit.CHECKPOINT, weights_only=False)
    assert state["run_key"]["student_guidance_scale"] == 1.5
    pipe = DiTARPipeline.from_pretrained(str(target))
    pipe.set_progress_bar_config(disable=True)
    generation = pipe.model.generation_config
    assert generation.guidance_scale == 1.5 and generation.distilled_guidance_scale is None
    calls = []
    pipe.model.locdit.register_forward_hook(lambda module, args, out: calls.append(out.shape[0]))
    pipe("hello world", max_new_patches=3, num_candidates=1, generator=torch.Generator().manual_seed(0))
    assert calls == [2] * 6  # 3 patches x K=2 steps, conditional and unconditional rows together
    with pytest.raises(SystemExit, match="belongs to another run"):  # the folded run's checkpoint is not resumed
        _run(teacher_and_corpus, tmp_path / "run")


def test_folded_guidance_refuses_a_second_guidance(full_run):
    config = DiTARGenerationConfig(distilled_guidance_scale=1.5, guidance_scale=1.0)
    assert resolve_generation_settings(config).distilled_guidance_scale == 1.5
    with pytest.raises(ValueError, match="guidance_scale` must be 1 for this model"):
        resolve_generation_settings(config, guidance_scale=2.0)
    with pytest.raises(ValueError, match="distilled_guidance_scale"):
        resolve_generation_settings(config, distilled_guidance_scale=-1.0)
    pipe = DiTARPipeline.from_pretrained(str(full_run[1]))
    with pytest.raises(ValueError, match="guidance_scale` must be 1"):
        pipe("hello world", max_new_patches=2, guidance_scale=1.5)


def test_a_teacher_with_no_more_steps_than_the_student_is_refused(teacher_and_corpus, tmp_path):
    """A one-step student as the teacher (say, a distilled default) would only be copied: named error."""
    pipe = DiTARPipeline.from_pretrained(str(teacher_and_corpus[0]))
    pipe.model.generation_config.num_inference_steps = 2
    cfg = distill_locdit.DistillConfig(corpus="c", output_dir=str(tmp_path), student_steps=2)
    with pytest.raises(ValueError, match="teacher samples with 2 LocDiT step"):
        distill_locdit.teacher_settings(cfg, pipe)
    cfg.teacher_steps = 4  # the teacher's multi-step sampler, asked for explicitly
    assert distill_locdit.teacher_settings(cfg, pipe)["steps"] == 4


@pytest.mark.parametrize(
    "settings, message",
    [
        ("student_step: 2", "unknown distillation settings: 'student_step' \\(did you mean 'student_steps'\\?\\)"),
        ("num_pair_shards: 1", "num_pair_shards must be >= 2"),
        ("student_guidance_scale: 1.0", "student_guidance_scale must be a number > 1"),
        ("on_policy_fraction: 1.0", "on_policy_fraction must be in \\(0, 1\\)"),
        ("mixed_precision: fp16", "mixed_precision must be no or bf16"),
        ("max_steps: 10\non_policy_rounds: 1\non_policy_start: 10", "on_policy_start=10 is not before max_steps=10"),
        (
            "max_steps: 1000\non_policy_rounds: 5\non_policy_every: 500",
            "on_policy_rounds=5 do not fit in max_steps=1000: .* only 2 round\\(s\\) .* on_policy_rounds: 2",
        ),
        ("grad_clip: 0", "grad_clip must be a finite number > 0"),
        ("grad_clip: -1.0", "grad_clip must be a finite number > 0"),
        ("learning_rate: 0", "learning_rate must be a finite number > 0"),
        ("learning_rate: -1.0e-3", "learning_rate must be a finite number > 0"),
        ("weight_decay: -0.1", "weight_decay must be a finite number >= 0"),
        ("warmup_steps: -5", "warmup_steps must be an integer >= 0"),
        ("eval_every: 0", "eval_every must be an integer >= 1"),
        ("save_every: 0", "save_every must be an integer >= 1"),
        ("threads: 0", "threads must be an integer >= 1"),
        ("threads: -2", "threads must be an integer >= 1"),
        ("device: gpu", "device must be a torch device such as cpu, cuda"),
        ("teacher_steps: 0", "teacher_steps must be an integer >= 1"),
        ("guidance_scale: -2", "guidance_scale must be a finite number >= 0"),
        ("temperature: 5", "temperature must be a number in \\[0, 1\\]"),
        (
            "max_steps: 0",
            "max_steps must be an integer >= 1 \\(to compute only the teacher endpoints, pass --pairs-only",
        ),
        ("time_budget_min: 0", "time_budget_min \\(--time-budget-min\\) must be a finite number of minutes > 0"),
        ("time_budget_min: -5", "time_budget_min \\(--time-budget-min\\) must be a finite number of minutes > 0"),
    ],
)
def test_bad_configs_name_the_setting(tmp_path, settings, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"corpus: x\noutput_dir: y\n{settings}\n")
    with pytest.raises(ValueError, match=message):
        distill_locdit.DistillConfig.from_yaml(bad)


def test_bf16_autocast_trains_the_student_with_finite_losses(teacher_and_corpus, full_run, tmp_path):
    config = tmp_path / "bf16.yaml"
    config.write_text(TINY.read_text() + "mixed_precision: bf16\n")
    teacher, corpus = teacher_and_corpus
    out = tmp_path / "run"
    argv = ["--config", str(config), "--teacher", str(teacher), "--corpus", str(corpus), "--output-dir", str(out)]
    distill_locdit.main([*argv, "--pairs-dir", str(full_run[0].parent / "pairs")])  # the same teacher endpoints
    state = torch.load(out / distill_locdit.CHECKPOINT, weights_only=False)
    losses = [entry["loss"] for entry in state["log"]]
    assert state["step"] == 6 and all(torch.isfinite(torch.tensor(losses)))
    float32 = torch.load(full_run[0] / distill_locdit.CHECKPOINT, weights_only=False)["log"][0]["loss"]
    assert losses[0] != float32 and abs(losses[0] - float32) < 0.05 * float32  # bf16 rounding, same batch
    no = tmp_path / "no.yaml"
    no.write_text("corpus: x\noutput_dir: y\nmixed_precision: no\n")  # YAML reads a bare no as false
    assert distill_locdit.DistillConfig.from_yaml(no).mixed_precision == "no"


def test_a_config_without_corpus_is_refused():
    with pytest.raises(ValueError, match="corpus is not set"):
        distill_locdit.DistillConfig.from_yaml(TINY, output_dir="y")


@pytest.mark.parametrize("name", ["distill-cpu.yaml", "distill-gpu.yaml"])  # distill-tiny.yaml: the run tests
def test_shipped_configs_load(name):
    cfg = distill_locdit.DistillConfig.from_yaml(TINY.parent / name)
    assert cfg.student_steps in (1, 2) and (Path(__file__).resolve().parents[1] / cfg.teacher).is_dir()


def _on_policy_config(tmp_path: Path) -> Path:
    config = tmp_path / "on-policy.yaml"
    config.write_text(
        TINY.read_text()
        + "on_policy_rounds: 2\non_policy_start: 2\non_policy_every: 2\n"
        + "on_policy_utterances: 2\non_policy_fraction: 0.5\n"
    )
    return config


def test_recorded_solves_are_what_generation_sampled(teacher_and_corpus):
    """Every record holds the solved rows' context and draw: re-solving it gives the generated patch, and the
    records cover every active row of every patch."""
    model = DiTARPipeline.from_pretrained(str(teacher_and_corpus[0])).model
    steps = []
    with distill_locdit.recording_patch_solves(torch.Generator().manual_seed(4)) as records:
        out = model.generate(
            input_ids=torch.tensor([[5, 6, 7, 8]]),
            num_inference_steps=2,
            guidance_scale=1.0,
            temperature=0.5,
            num_candidates=1,
            max_new_patches=5,
            patch_callback=steps.append,
        )
    assert out is not None and len(records) == len(steps) > 0
    for record, step in zip(records, steps, strict=True):
        assert record["cond"].shape[0] == int(step.active.sum())
        with torch.no_grad():
            again = distill_locdit.solve(model.locdit, record, record["noise"], 2, 1.0, 0.5)
        torch.testing.assert_close(again, record["patch"])
        torch.testing.assert_close(step.patch[step.active], record["patch"])
    # the sampler is restored after the block
    assert PatchSampler.sample is not None and "recording" not in PatchSampler.sample.__qualname__


def test_on_policy_rounds_join_the_batches(teacher_and_corpus, full_run, tmp_path, monkeypatch):
    (tmp_path / "pairs").symlink_to(full_run[0].parent / "pairs")
    teacher, corpus = teacher_and_corpus
    seen, real_loss = [], distill_locdit.student_loss

    def keep_batch(student, pairs, rows, *args, **kwargs):
        seen.append({key: value[rows] for key, value in pairs.items()})
        return real_loss(student, pairs, rows, *args, **kwargs)

    monkeypatch.setattr(distill_locdit, "student_loss", keep_batch)
    argv = ["--config", str(_on_policy_config(tmp_path)), "--teacher", str(teacher), "--corpus", str(corpus)]
    distill_locdit.main([*argv, "--output-dir", str(tmp_path / "run"), "--pairs-dir", str(tmp_path / "pairs")])
    state = torch.load(tmp_path / "run" / distill_locdit.CHECKPOINT, weights_only=False)
    assert [entry["round"] for entry in state["on_policy_mse"]] == [0, 1]
    assert all(torch.isfinite(torch.tensor(entry["mse"])) for entry in state["on_policy_mse"])
    round0 = torch.load(tmp_path / "run" / "on_policy" / "round-00.pt", weights_only=True)
    assert round0["cond"].shape[0] == round0["target"].shape[0] > 0
    half = 8  # batch 16, on_policy_fraction 0.5
    assert all(len(batch["cond"]) == 16 for batch in seen)
    # before the first round every row is teacher-forced; from step 2 on, the batch's second half is on-policy
    assert not any(torch.equal(row, other) for row in seen[0]["cond"] for other in round0["cond"])
    assert all(any(torch.equal(row, other) for other in round0["cond"]) for row in seen[2]["cond"][half:])


def test_teacher_endpoints_stop_at_their_share_of_the_time_budget(teacher_and_corpus, tmp_path):
    """On a machine where endpoints are slower than planned, training still gets time: past half the budget no
    further shard is started once the held-out shard (made first) and one training shard exist, and the run trains on
    the training shards made."""
    config = tmp_path / "three_shards.yaml"
    config.write_text(TINY.read_text().replace("num_pair_shards: 2", "num_pair_shards: 3"))
    teacher, corpus = teacher_and_corpus
    out = tmp_path / "run"
    argv = ["--config", str(config), "--teacher", str(teacher), "--corpus", str(corpus), "--output-dir", str(out)]
    target = distill_locdit.main([*argv, "--time-budget-min", "1e-6"])
    assert sorted(p.name for p in (out / "pairs").glob("shard-*.pt")) == ["shard-0000.pt", "shard-0002.pt"]
    log = (out / "log.txt").read_text()
    assert "training on 1 of 2 training shards (shard-0002.pt held out)" in log
    assert (target / "model_index.json").is_file() and (out / "student" / "locdit.safetensors").is_file()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--time-budget-min", "0", "time_budget_min \\(--time-budget-min\\) must be a finite number of minutes > 0"),
        ("--time-budget-min", "-1", "time_budget_min \\(--time-budget-min\\) must be a finite number of minutes > 0"),
        ("--time-budget-min", "nan", "time_budget_min \\(--time-budget-min\\) must be a finite number of minutes > 0"),
        (
            "--max-steps",
            "0",
            "max_steps must be an integer >= 1 \\(to compute only the teacher endpoints, pass --pairs",
        ),
        ("--student-guidance-scale", "inf", "student_guidance_scale must be a number > 1"),
        ("--device", "foo", "device must be a torch device"),
    ],
)
def test_bad_options_stop_before_anything_is_written(teacher_and_corpus, tmp_path, option, value, message):
    """An untrained student must not be written as a distilled pipeline (a budget of 0 minutes, max_steps 0)."""
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=f"^error: {message}"):
        _run(teacher_and_corpus, out, option, value)
    assert not out.exists() and not (tmp_path / "pairs").exists()


def test_a_device_this_machine_lacks_is_refused(teacher_and_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="^error: device 'cuda': this machine has no cuda device; use device: cpu"):
        _run(teacher_and_corpus, tmp_path / "run", "--device", "cuda")
    assert not (tmp_path / "run").exists()


def _bad_corpora(directory: Path) -> dict[str, Path]:
    from datasets import Dataset, DatasetDict

    generator = torch.Generator().manual_seed(1)

    def rows(frames, dim=FEATURE_DIM, speakers=True):
        data = {
            "features": [torch.randn(n, dim, generator=generator).tolist() for n in frames],
            "text": ["hello world"] * len(frames),
        }
        if speakers:
            data["speaker_id"] = ["a", "b"] * (len(frames) // 2)
        return Dataset.from_dict(data)

    corpora = {"missing": directory / "missing", "a file": directory / "a_file"}
    corpora["a file"].write_text("x")
    made = {
        "a single Dataset": rows([12, 12]),
        "no train split": DatasetDict({"validation": rows([12, 12])}),
        "no speaker_id": DatasetDict({"train": rows([12, 12], speakers=False)}),
        "other feature size": DatasetDict({"train": rows([12, 12], dim=FEATURE_DIM + 3)}),
        "zero-frame rows": DatasetDict({"train": rows([12, 0, 12, 0])}),
        "shorter than a patch": DatasetDict({"train": rows([12, 1])}),
        "empty split": DatasetDict({"train": rows([12, 12]).select([])}),
    }
    for name, data in made.items():
        data.save_to_disk(str(directory / name.replace(" ", "_")))
        corpora[name] = directory / name.replace(" ", "_")
    return corpora


BAD_CORPUS_MESSAGES = {
    "missing": "corpus .*missing does not exist: give a corpus folder that examples/build_corpus.py --features wrote",
    "a file": "corpus .*a_file is a file, not a corpus folder",
    "a single Dataset": "is a single Dataset, not a corpus of splits \\(a DatasetDict with a 'train' split\\)",
    "no train split": "has no split 'train' \\(its splits: \\['validation'\\]\\); set split: to one",
    "no speaker_id": "its 'train' split has no speaker_id column",
    "other feature size": f"its features have {FEATURE_DIM + 3} values per frame, the teacher .* reads {FEATURE_DIM}",
    "zero-frame rows": "2 of the 4 utterances .* fewer than patch_size=2 feature frames \\(2 have none; rows \\[1, 3",
    "shorter than a patch": "1 of the 2 utterances .* fewer than patch_size=2 feature frames \\(rows \\[1\\]\\)",
    "empty split": "(its 'train' split is empty|cannot be loaded .* a split without utterances)",
}


def test_bad_corpora_are_named_and_leave_no_pairs_folder_behind(teacher_and_corpus, tmp_path):
    """Each corpus problem is one `error:` line; the pairs folder is not claimed (pairs_meta.json) by a corpus that did
    not load, and the run's config is not written, so the corrected rerun goes ahead."""
    teacher = teacher_and_corpus[0]
    for name, path in _bad_corpora(tmp_path).items():
        with pytest.raises(SystemExit, match=f"^error: (corpus )?.*{BAD_CORPUS_MESSAGES[name]}"):
            _run((teacher, path), tmp_path / "run")
        assert not (tmp_path / "pairs" / distill_locdit.PAIRS_META).exists(), name
        assert not (tmp_path / "run" / "distill_config.json").exists(), name
    _run(teacher_and_corpus, tmp_path / "run", "--pairs-only")  # the corrected rerun goes ahead
    assert (tmp_path / "pairs" / distill_locdit.PAIRS_META).is_file()


def test_bad_teachers_and_folders_are_one_line_errors(teacher_and_corpus, full_run, tmp_path, monkeypatch):
    teacher, corpus = teacher_and_corpus
    (tmp_path / "a_file").write_text("x")
    monkeypatch.chdir(tmp_path)  # a relative path that does not exist is not looked up on the Hub
    cases = {
        "no_such_teacher": "teacher no_such_teacher is no local folder, and no Hub repo id",
        str(tmp_path / "a_file"): "teacher .*a_file is a file, not a folder",
        str(corpus): ".*corpus is not a DiTAR pipeline folder: it has no model_index.json",
        str(full_run[1]): "the teacher is itself a distilled student; distil from the multi-step pipeline",
    }
    for bad, message in cases.items():
        with pytest.raises(SystemExit, match=f"^error: {message}"):
            _run((bad, corpus), tmp_path / "run")
    with pytest.raises(SystemExit, match="^error: output_dir .*a_file is a file: give a folder"):
        _run(teacher_and_corpus, tmp_path / "a_file")
    argv = ["--config", str(TINY), "--teacher", str(teacher), "--corpus", str(corpus)]
    with pytest.raises(SystemExit, match="^error: pairs_dir .*a_file is a file: give a folder"):
        distill_locdit.main([*argv, "--output-dir", str(tmp_path / "r"), "--pairs-dir", str(tmp_path / "a_file")])
    # teacher endpoints of another corpus
    other = tmp_path / "other"
    _tiny_corpus(other)
    (tmp_path / "pairs").symlink_to(full_run[0].parent / "pairs")
    with pytest.raises(
        SystemExit, match="^error: .* holds teacher endpoints made with other settings \\(\\['corpus'\\]"
    ):
        _run((teacher, other / "corpus"), tmp_path / "run")


def _resumable_copy(full_run, tmp_path: Path) -> Path:
    """A folder holding the full run's checkpoint and sharing its pairs, as an interrupted run would."""
    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "pairs").symlink_to(full_run[0].parent / "pairs")
    (out / distill_locdit.CHECKPOINT).write_bytes((full_run[0] / distill_locdit.CHECKPOINT).read_bytes())
    (out / "distill_config.json").write_text("kept")
    return out


def test_resume_refuses_changed_training_settings_and_names_them(teacher_and_corpus, full_run, tmp_path):
    out = _resumable_copy(full_run, tmp_path)
    teacher, corpus = teacher_and_corpus
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        TINY.read_text()
        .replace("learning_rate: 1.0e-3", "learning_rate: 0.5")
        .replace("batch_size: 16", "batch_size: 4")
    )
    shards = tmp_path / "shards.yaml"
    shards.write_text(TINY.read_text().replace("num_pair_shards: 2", "num_pair_shards: 3"))
    for config, message in (
        (changed, "belongs to another run: batch_size 16 -> 4, learning_rate 0.001 -> 0.5 \\(checkpoint -> this"),
        (shards, "belongs to another run: num_pair_shards 2 -> 3 \\(checkpoint"),  # the held-out shard would move
    ):
        argv = ["--config", str(config), "--teacher", str(teacher), "--corpus", str(corpus), "--output-dir", str(out)]
        with pytest.raises(SystemExit, match=f"^error: .*{message}"):
            distill_locdit.main([*argv, "--pairs-dir", str(tmp_path / "pairs")])
        assert (out / "distill_config.json").read_text() == "kept"  # refused before the run's config is written
    assert not (full_run[0].parent / "pairs" / "shard-0002.pt").exists()  # and before any endpoint is computed
    _run(teacher_and_corpus, out, "--max-steps", "8")  # more steps: the same run, continued
    state = torch.load(out / distill_locdit.CHECKPOINT, weights_only=False)
    assert state["step"] == 8 and len(state["log"]) == 8
    assert state["shards"] == ["shard-0000.pt", "shard-0001.pt"]  # the split it trained on, for later resumes


def test_an_unreadable_checkpoint_is_a_one_line_error(teacher_and_corpus, full_run, tmp_path):
    out = _resumable_copy(full_run, tmp_path)
    ckpt = out / distill_locdit.CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # cut short
    with pytest.raises(SystemExit, match="^error: .*checkpoint.pt cannot be read .* delete it to start the run over"):
        _run(teacher_and_corpus, out)
    torch.save({"step": 3}, ckpt)
    with pytest.raises(
        SystemExit, match="^error: .*checkpoint.pt is no checkpoint of this script \\(it has no run key"
    ):
        _run(teacher_and_corpus, out)


def test_a_resumed_run_keeps_the_shards_it_started_with(tmp_path):
    """A first run cut short by its time budget made 2 of 3 shards, the held-out one (the last) and the first; the
    rerun makes the second and goes on training on the first alone, as its checkpoint's steps did."""
    paths = [tmp_path / f"shard-{i:04d}.pt" for i in range(3)]
    logged = []
    assert distill_locdit.resumed_shards(None, paths, logged.append) == paths
    assert distill_locdit.resumed_shards({"step": 3}, paths, logged.append) == paths  # checkpoints before the record
    state = {"step": 3, "shards": ["shard-0000.pt", "shard-0002.pt"]}
    assert distill_locdit.resumed_shards(state, paths, logged.append) == [paths[0], paths[2]]
    assert logged == ["resuming on the run's 2 pair shards (shard-0002.pt held out); the 1 made since stay unused"]
    with pytest.raises(ValueError, match="the pair shards \\['shard-0000.pt'\\] this run trained on are gone"):
        distill_locdit.resumed_shards(state, paths[1:], logged.append)


def _teacher_with_candidate_locdit(folder: Path) -> Path:
    """A teacher whose candidate LocDiT samples the first 3 patches of 2 competing candidates in one step."""
    pipe = get_dummy_pipeline(seed=0, ctc_loss_weight=1.0, candidate_locdit=True)
    pipe.model.candidate_locdit.load_state_dict(pipe.model.locdit.state_dict())
    generation = pipe.model.generation_config
    generation.guidance_scale, generation.num_candidates = 1.5, 2
    generation.candidate_prune_after_patches, generation.candidate_num_inference_steps = 3, 1
    pipe.save_pretrained(folder)
    return folder


def _locdit_calls(model) -> list[str]:
    """The name of the LocDiT module that each LocDiT call of `model` runs on."""
    calls = []
    for name, module in model.named_modules():
        if isinstance(module, type(model.locdit)):
            module.register_forward_hook(lambda module, args, out, name=name: calls.append(name))
    return calls


def test_the_student_samples_the_candidates_too(teacher_and_corpus, tmp_path, capsys):
    """The teacher's candidate LocDiT (distilled from the teacher's LocDiT) is left out of the written and of the
    assembled pipeline: the competing candidates' first patches are the student's too, at its own K steps. A student
    folder written before then still names the teacher's candidate steps; assembling drops them."""
    teacher = _teacher_with_candidate_locdit(tmp_path / "teacher")
    argv = ["--config", str(TINY), "--teacher", str(teacher), "--corpus", str(teacher_and_corpus[1])]
    written = distill_locdit.main([*argv, "--output-dir", str(tmp_path / "run")])
    said = capsys.readouterr().out
    assert "the teacher's candidate LocDiT is left out" in said and "conversion/add_candidate_locdit.py" in said
    student = tmp_path / "run" / "student"
    generation = json.loads((student / "generation_config.json").read_text())
    generation["candidate_num_inference_steps"] = 1  # as the teacher's config, which older students copied
    (student / "generation_config.json").write_text(json.dumps(generation))
    assembled = distill_locdit.main([*argv, "--output-dir", str(tmp_path / "assembled"), "--assemble", str(student)])
    assert "the teacher's candidate LocDiT is left out" in capsys.readouterr().out
    for folder in (written, assembled):
        pipe = DiTARPipeline.from_pretrained(str(folder))
        pipe.set_progress_bar_config(disable=True)
        model = pipe.model
        assert model.candidate_locdit is None and not model.config.candidate_locdit, folder
        config = model.generation_config
        assert (config.num_candidates, config.num_inference_steps, config.candidate_num_inference_steps) == (2, 2, None)
        calls = _locdit_calls(model)
        pipe("hello world", max_new_patches=4, generator=torch.Generator().manual_seed(0))
        assert len(calls) == 8 and set(calls) == {"locdit"}, (folder, calls)  # 4 patches x K=2 steps, candidates too


class _Utterance:  # held_out_split and shard_rows read only the speaker
    def __init__(self, speaker: str):
        self.speaker = speaker


def _drawn(rows) -> set[int]:
    """The utterances of shard rows, prompts included."""
    return {index for row in rows for index in row if index >= 0}


def test_the_held_out_shard_draws_from_utterances_no_training_shard_draws_from():
    """The GPU recipe on a corpus of 640 utterances by 80 speakers: every shard used to draw from the whole corpus, so
    all 160 held-out rows' utterances were trained on, most with the same prompt (a bit-identical context). The held
    out shard now draws from whole speakers, about 1 in 33 of the corpus, that no training shard draws from."""
    cfg = distill_locdit.DistillConfig.from_yaml(TINY.parent / "distill-gpu.yaml")
    utterances = [_Utterance(f"s{i // 8}") for i in range(640)]
    split = distill_locdit.held_out_split(utterances, cfg)
    assert 20 <= len(split["held_out"]) <= 40 and sorted(split["held_out"] + split["train"]) == list(range(640))
    assert split["description"].startswith("held out: 3 of 80 speakers (24 of 640 utterances)")
    rows = {
        shard: distill_locdit.shard_rows(utterances, shard, cfg, distill_locdit.shard_pool(split, shard, cfg))
        for shard in range(cfg.num_pair_shards)
    }
    held = _drawn(rows.pop(cfg.num_pair_shards - 1))
    trained = set().union(*(_drawn(shard_rows) for shard_rows in rows.values()))
    assert held <= set(split["held_out"]) and not held & trained
    assert not {utterances[i].speaker for i in held} & {utterances[i].speaker for i in trained}
    assert distill_locdit.shard_rows(utterances, 3, cfg, split["train"]) == rows[3]  # deterministic in (seed, shard)
    # one speaker: single utterances are held out instead
    alone = [_Utterance("a") for _ in range(66)]
    split = distill_locdit.held_out_split(alone, cfg)
    assert len(split["held_out"]) == 2 and "2 of 66 utterances (no set of whole speakers" in split["description"]
    with pytest.raises(ValueError, match="has 1 utterance\\(s\\), too few to hold any out: .*num_pair_shards=33"):
        distill_locdit.held_out_split(alone[:1], cfg)


def test_pair_shards_and_on_policy_rounds_keep_the_held_out_utterances_apart(teacher_and_corpus, tmp_path, monkeypatch):
    """Through a run: the utterances (and prompts) the held-out shard draws are drawn by no training shard and no
    on-policy round; the tiny corpus's two speakers end up on either side."""
    drawn: dict[str, set[int]] = {}
    phase = {"now": None}
    real_make_shard, real_round, real_partner = (
        distill_locdit.make_shard,
        distill_locdit.make_on_policy_round,
        distill_locdit.prompt_partner,
    )

    def make_shard(pipe, utterances, shard, *args, **kwargs):
        phase["now"] = "held out" if shard == 1 else "trained"  # num_pair_shards 2
        return real_make_shard(pipe, utterances, shard, *args, **kwargs)

    def make_round(*args, **kwargs):
        phase["now"] = "round"
        return real_round(*args, **kwargs)

    def prompt_partner(index, *args, **kwargs):  # called once for every utterance a shard or round draws
        partner = real_partner(index, *args, **kwargs)
        drawn.setdefault(phase["now"], set()).update(_drawn([(index, partner)]))
        return partner

    monkeypatch.setattr(distill_locdit, "make_shard", make_shard)
    monkeypatch.setattr(distill_locdit, "make_on_policy_round", make_round)
    monkeypatch.setattr(distill_locdit, "prompt_partner", prompt_partner)
    teacher, corpus = teacher_and_corpus
    argv = ["--config", str(_on_policy_config(tmp_path)), "--teacher", str(teacher), "--corpus", str(corpus)]
    distill_locdit.main([*argv, "--output-dir", str(tmp_path / "run"), "--pairs-dir", str(tmp_path / "pairs")])
    assert drawn["held out"] and drawn["trained"] and drawn["round"]
    assert not drawn["held out"] & (drawn["trained"] | drawn["round"])
    speakers = [f"spk{i % 2}" for i in range(8)]  # _tiny_corpus
    assert {speakers[i] for i in drawn["held out"]}.isdisjoint(speakers[i] for i in drawn["trained"] | drawn["round"])


def test_runs_and_pairs_from_before_the_held_out_split_are_refused(teacher_and_corpus, full_run, tmp_path):
    """A checkpoint, or teacher endpoints, whose held-out shard drew from the whole corpus: resuming would mix shards
    of both kinds, so it is refused with what to do."""
    out = _resumable_copy(full_run, tmp_path)
    state = torch.load(out / distill_locdit.CHECKPOINT, weights_only=False)
    del state["run_key"]["held_out"]
    torch.save(state, out / distill_locdit.CHECKPOINT)
    with pytest.raises(SystemExit, match="^error: .*belongs to a run from before the held-out shard was kept apart"):
        _run(teacher_and_corpus, out)
    pairs = tmp_path / "old" / "pairs"
    pairs.mkdir(parents=True)
    meta = json.loads((full_run[0].parent / "pairs" / distill_locdit.PAIRS_META).read_text())
    for key in ("held_out", "num_pair_shards"):
        del meta[key]
    (pairs / distill_locdit.PAIRS_META).write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="^error: .*pairs holds teacher endpoints made before the held-out shard"):
        _run(teacher_and_corpus, tmp_path / "old" / "run")


def _budgeted_run(monkeypatch, cfg, seconds_per_step, round_seconds: float = 0.0, minutes: float = 10.0, until=None):
    """train_student's schedule under a time budget (its loop without the training), on a clock that steps take
    `seconds_per_step(step)` and on-policy rounds `round_seconds` of, until the run ends (or at step `until`): the
    run's state, the lr of every step, the seconds the run took, the steps its rounds came at and what it said."""
    clock = {"now": 1000.0}
    monkeypatch.setattr(distill_locdit, "time", types.SimpleNamespace(time=lambda: clock["now"]))
    budget = distill_locdit.StepBudget(minutes, clock["now"], 0)
    state = {"step": 0, "max_steps": cfg.max_steps, "max_steps_given": cfg.max_steps, "decay_from": None}
    lrs, rounds_at, said = {}, [], []
    while state["step"] < state["max_steps"] and not budget.passed() and state["step"] != until:
        budget.update(state, cfg, len(cfg.on_policy_round_steps()) - len(rounds_at), said.append)
        round_steps = distill_locdit.on_policy_steps(cfg, state["max_steps"])
        while len(rounds_at) < sum(1 for step in round_steps if step <= state["step"]):
            rounds_at.append(state["step"])
            clock["now"] += round_seconds
            budget.note_round(round_seconds)
        lrs[state["step"]] = distill_locdit.lr_at(state["step"], cfg, state["max_steps"], state["decay_from"])
        clock["now"] += seconds_per_step(state["step"])
        state["step"] += 1
    return state, lrs, clock["now"] - 1000.0, rounds_at, said


def _schedule_config(**settings) -> distill_locdit.DistillConfig:
    defaults = {"output_dir": "o", "corpus": "c", "learning_rate": 1.0, "warmup_steps": 50, "max_steps": 6000}
    return distill_locdit.DistillConfig(**defaults | settings)


def _smooth_decay(lrs: dict[int, float], cfg) -> bool:
    """After the warm-up the lr never rises and never drops by more than 1% of the peak in one step."""
    steps = sorted(step for step in lrs if step >= cfg.warmup_steps)
    return all(0 <= lrs[a] - lrs[b] < 0.01 for a, b in zip(steps, steps[1:], strict=False))


def test_a_time_budget_fits_the_lr_decay_and_the_on_policy_rounds_into_it(monkeypatch):
    """The GPU recipe stopped by its 9-minute budget at step ~2,000 of 6,000 ended at ~79% of the peak lr, before
    its on-policy rounds at 1,500 (maybe), 3,000 and 4,500. The budget now measures the step rate and ends the decay on
    time; the rounds move with the end, and their time is kept free once one has shown what a round costs."""
    cfg = _schedule_config()
    state, lrs, seconds, _, said = _budgeted_run(monkeypatch, cfg, lambda step: 0.5)  # 2 steps/s, 10 minutes
    end = state["max_steps"]
    assert 1100 < end < 1200 and state["step"] == end and seconds <= 600  # about 0.97 x 600 s x 2 steps/s
    assert lrs[end - 1] == pytest.approx(0.1, abs=1e-3) and _smooth_decay(lrs, cfg)
    assert said[0] == f"time budget: 2.00 steps/s -> the run ends at step {end}, where the lr decay ends"
    # the steps slow down to half their speed after step 400: the end comes in, the decay still ends on time
    state, lrs, seconds, _, _ = _budgeted_run(monkeypatch, cfg, lambda step: 0.5 if step < 400 else 1.0)
    assert 700 < state["max_steps"] < 800 and state["step"] == state["max_steps"] and seconds <= 600
    assert lrs[state["max_steps"] - 1] == pytest.approx(0.1, abs=1e-3) and _smooth_decay(lrs, cfg)
    # on-policy rounds of 60 s each, at 1,500, 3,000 and 4,500 of 6,000 steps: at a quarter, half and three quarters
    cfg = _schedule_config(on_policy_rounds=3, on_policy_start=1500, on_policy_every=1500)
    state, lrs, seconds, rounds_at, said = _budgeted_run(monkeypatch, cfg, lambda step: 0.5, round_seconds=60.0)
    end = state["max_steps"]
    assert len(rounds_at) == 3 and state["step"] == end and seconds <= 600
    assert lrs[end - 1] == pytest.approx(0.1, abs=1e-3) and _smooth_decay(lrs, cfg)
    # the first round comes before its cost is known, at a quarter of the first estimate's end; the others where
    # the config puts them, in the end that leaves their time free
    assert rounds_at[0] < 0.4 * end and [round(step / end, 2) for step in rounds_at[1:]] == [0.5, 0.75]
    assert said[-1] == (
        f"time budget: 2.00 steps/s -> the run ends at step {end}, where the lr decay ends; on-policy rounds at "
        f"steps {distill_locdit.on_policy_steps(cfg, end)}"
    )
    # a budget that fits more than max_steps leaves the run as the config has it
    cfg = _schedule_config(max_steps=600)
    state, lrs, _, _, said = _budgeted_run(monkeypatch, cfg, lambda step: 0.5)
    assert state["max_steps"] == 600 and state["decay_from"] is None
    assert said == ["time budget: 2.00 steps/s -> the run's 600 steps fit in it"]
    assert all(lrs[step] == distill_locdit.lr_at(step, cfg) for step in lrs)


def test_a_resumed_run_keeps_its_schedule_and_a_new_end_continues_it(monkeypatch):
    cfg = _schedule_config()
    _, lrs, _, _, _ = _budgeted_run(monkeypatch, cfg, lambda step: 0.5)
    saved, _, _, _, _ = _budgeted_run(monkeypatch, cfg, lambda step: 0.5, until=600)  # its checkpoint at step 600
    end = saved["max_steps"]
    assert 1100 < end < 1200 and saved["decay_from"][0] < 600
    logged = []

    def resumed(budgeted: bool, **changed) -> dict:
        resumed_state = dict(saved)
        distill_locdit.continue_schedule(resumed_state, _schedule_config(**changed), budgeted, logged.append)
        return resumed_state

    again = resumed(budgeted=False)  # the end and learning rates of the uninterrupted run
    assert again["max_steps"] == end and again["decay_from"] == saved["decay_from"] and logged == []
    again = resumed(budgeted=True)  # a new budget: toward max_steps from the lr the run had, until it measures
    assert again["max_steps"] == 6000
    assert distill_locdit.lr_at(600, cfg, 6000, again["decay_from"]) == pytest.approx(lrs[600])
    assert logged[-1].startswith(f"--time-budget-min: the run goes on from step 600 (it was to end at {end})")
    again = resumed(budgeted=False, max_steps=3000)  # another max_steps: the decay over it, as before budgets
    assert again["max_steps"] == 3000 and again["decay_from"] is None and "max_steps 6000 -> 3000" in logged[-1]


def test_a_budgeted_run_ends_its_decay_and_its_rounds_on_time(teacher_and_corpus, full_run, tmp_path, monkeypatch):
    """Through a run, on a clock where a training step takes 0.5 s: a 1-minute budget fits about 118 of max_steps
    400; the last step trains at 10% of the peak lr, and both on-policy rounds (at 100 and 200 of 400) come."""
    (tmp_path / "pairs").symlink_to(full_run[0].parent / "pairs")
    clock = {"now": 1000.0}
    monkeypatch.setattr(distill_locdit, "time", types.SimpleNamespace(time=lambda: clock["now"]))
    real_loss = distill_locdit.student_loss

    def timed_loss(*args, **kwargs):
        clock["now"] += 0.5
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(distill_locdit, "student_loss", timed_loss)
    config = tmp_path / "long.yaml"
    config.write_text(
        TINY.read_text().replace("max_steps: 6", "max_steps: 400").replace("eval_every: 3", "eval_every: 100")
        + "on_policy_rounds: 2\non_policy_start: 100\non_policy_every: 100\non_policy_utterances: 2\n"
    )
    teacher, corpus = teacher_and_corpus
    argv = ["--config", str(config), "--teacher", str(teacher), "--corpus", str(corpus)]
    run = ["--output-dir", str(tmp_path / "run"), "--pairs-dir", str(tmp_path / "pairs"), "--time-budget-min", "1"]
    distill_locdit.main([*argv, *run])
    state = torch.load(tmp_path / "run" / distill_locdit.CHECKPOINT, weights_only=False)
    assert len(state["on_policy_mse"]) == 2
    assert 100 < state["step"] == state["max_steps"] < 130
    assert state["log"][-1]["lr"] == pytest.approx(1e-4, rel=0.02)  # learning_rate 1e-3
    assert (
        f"the run ends at step {state['max_steps']}, where the lr decay ends"
        in (tmp_path / "run" / "log.txt").read_text()
    )
