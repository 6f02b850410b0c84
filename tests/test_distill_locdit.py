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


def test_bad_configs_name_the_setting(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpus: x\noutput_dir: y\nstudent_step: 2\n")
    with pytest.raises(ValueError, match="unknown settings \\['student_step'\\]"):
        distill_locdit.DistillConfig.from_yaml(bad)
    bad.write_text("corpus: x\noutput_dir: y\nnum_pair_shards: 1\n")
    with pytest.raises(ValueError, match="num_pair_shards must be >= 2"):
        distill_locdit.DistillConfig.from_yaml(bad)
    with pytest.raises(ValueError, match="corpus is not set"):
        distill_locdit.DistillConfig.from_yaml(TINY, output_dir="y")


@pytest.mark.parametrize("name", ["distill-cpu.yaml", "distill-gpu.yaml"])  # distill-tiny.yaml: the run tests
def test_shipped_configs_load(name):
    cfg = distill_locdit.DistillConfig.from_yaml(TINY.parent / name)
    assert cfg.student_steps in (1, 2) and (Path(__file__).resolve().parents[1] / cfg.teacher).is_dir()
