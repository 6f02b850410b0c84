"""Few-step LocDiT distillation (examples/distill_locdit.py): a tiny run trains, resumes to the same weights, and
writes a pipeline that samples with K unguided LocDiT calls per patch; folded guidance refuses a second guidance."""

import sys
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
    further shard is started once two exist, and the run trains on (and holds out from) the shards made."""
    config = tmp_path / "three_shards.yaml"
    config.write_text(TINY.read_text().replace("num_pair_shards: 2", "num_pair_shards: 3"))
    teacher, corpus = teacher_and_corpus
    out = tmp_path / "run"
    argv = ["--config", str(config), "--teacher", str(teacher), "--corpus", str(corpus), "--output-dir", str(out)]
    target = distill_locdit.main([*argv, "--time-budget-min", "1e-6"])
    assert sorted(p.name for p in (out / "pairs").glob("shard-*.pt")) == ["shard-0000.pt", "shard-0001.pt"]
    log = (out / "log.txt").read_text()
    assert "training on 2 of 3 shards" in log
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
    """A first run cut short by its time budget made 2 of 3 shards and held out the second; the rerun makes the third
    and must not hold that one out instead (its baseline was measured on the second, which it would train on)."""
    paths = [tmp_path / f"shard-{i:04d}.pt" for i in range(3)]
    logged = []
    assert distill_locdit.resumed_shards(None, paths, logged.append) == paths
    assert distill_locdit.resumed_shards({"step": 3}, paths, logged.append) == paths  # checkpoints before the record
    state = {"step": 3, "shards": ["shard-0000.pt", "shard-0001.pt"]}
    assert distill_locdit.resumed_shards(state, paths, logged.append) == paths[:2]
    assert logged == ["resuming on the run's 2 pair shards (shard-0001.pt held out); the 1 made since stay unused"]
    with pytest.raises(ValueError, match="the pair shards \\['shard-0001.pt'\\] this run trained on are gone"):
        distill_locdit.resumed_shards(state, [paths[0], paths[2]], logged.append)
