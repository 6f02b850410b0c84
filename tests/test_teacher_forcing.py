"""The teacher-forced evaluation row (examples/eval_lib/teacher_forcing.py) on a tiny random pipeline.

The key check: teacher-forcing on the model's *own* generated patches is free-running generation, so at temperature 0
(no noise) every teacher-forced patch must equal the generated one. An off-by-one in the condition (a backbone output
that has already seen the patch) or in the history window breaks it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_helpers import HOP, PATCH, SR, get_dummy_pipeline, tone, write_wav

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RESEARCH = EXAMPLES / "research"  # the research probes
sys.path.insert(0, str(EXAMPLES))
from eval_lib.cases import Case, write_cases  # noqa: E402
from eval_lib.systems import TeacherForcedSystem, case_seed  # noqa: E402
from eval_lib.teacher_forcing import teacher_forced_features, teacher_forced_patches  # noqa: E402

_spec = importlib.util.spec_from_file_location("ditar_evaluate_cli_tf", EXAMPLES / "evaluate.py")
ev = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ev)


def _generate(pipe, inputs, num_patches, guidance_scale=2.0, temperature=0.0, steps=2):
    steps_out = pipe.model.generate_patches(
        inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        prompt_features=inputs["prompt_features"],
        prompt_attention_mask=inputs["prompt_attention_mask"],
        max_new_patches=num_patches,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        temperature=temperature,
        scheduler=pipe.scheduler,
    )
    return torch.cat([s.patch for s in steps_out])  # [N, P, D]


@pytest.mark.parametrize("guidance_scale", [1.0, 2.0])
def test_teacher_forcing_on_own_output_reproduces_generation(guidance_scale):
    pipe = get_dummy_pipeline()
    inputs = pipe.encode_inputs(["hello there"], tone(0.05), "the prompt", SR)
    generated = _generate(pipe, inputs, num_patches=5, guidance_scale=guidance_scale)
    prompt_frames = inputs["prompt_features"][0, : int(inputs["prompt_attention_mask"][0].sum())]
    forced = teacher_forced_patches(
        pipe.model,
        pipe.scheduler,
        inputs["input_ids"],
        inputs["attention_mask"],
        prompt_frames,
        generated.flatten(0, 1),
        num_inference_steps=2,
        guidance_scale=guidance_scale,
        temperature=0.0,
    )
    assert forced.shape == generated.shape
    torch.testing.assert_close(forced, generated, atol=1e-5, rtol=1e-4)


def test_patches_depend_on_the_real_prefix_only():
    pipe = get_dummy_pipeline()
    inputs = pipe.encode_inputs(["hello there"], tone(0.05), "the prompt", SR)
    prompt_frames = inputs["prompt_features"][0, : int(inputs["prompt_attention_mask"][0].sum())]
    target = torch.randn(6 * PATCH + 1, prompt_frames.shape[-1], generator=torch.Generator().manual_seed(0))
    changed = target.clone()
    changed[3 * PATCH :] += 1.0  # patches 3.. differ

    def run(frames):
        return teacher_forced_patches(
            pipe.model,
            pipe.scheduler,
            inputs["input_ids"],
            inputs["attention_mask"],
            prompt_frames,
            frames,
            2,
            2.0,
            0.0,
        )

    a, b = run(target), run(changed)
    assert a.shape[0] == 6  # the frame that does not fill a patch is dropped
    torch.testing.assert_close(a[:4], b[:4])  # patch 3 is predicted from patches 0..2 only
    assert not torch.allclose(a[4:], b[4:])


def test_too_short_target_and_vae_pipelines_are_refused():
    pipe = get_dummy_pipeline()
    inputs = pipe.encode_inputs(["hello there"], tone(0.05), "the prompt", SR)
    prompt_frames = inputs["prompt_features"][0]
    with pytest.raises(ValueError, match="shorter than one patch"):
        teacher_forced_patches(
            pipe.model,
            pipe.scheduler,
            inputs["input_ids"],
            inputs["attention_mask"],
            prompt_frames,
            prompt_frames[: PATCH - 1],
            2,
            2.0,
            0.0,
        )
    pipe.vae = object()
    with pytest.raises(ValueError, match="log-mel pipelines"):
        teacher_forced_features(pipe, tone(0.064), SR, "hello", tone(0.05), "the prompt")


def test_system_output_has_the_ground_truth_length_and_a_reproducible_sample(tmp_path):
    pipe = get_dummy_pipeline()
    target = write_wav(tmp_path / "t.wav", tone(0.064, freq=230.0))  # 512 samples = 32 frames = 16 patches
    case = Case(
        id="c0",
        prompt_audio=write_wav(tmp_path / "p.wav", tone(0.04)),
        prompt_text="the prompt",
        target_text="hello there",
        target_audio=target,
    )
    system = TeacherForcedSystem(pipe, num_inference_steps=2, seed=5)
    assert system.applies(case)
    assert not system.applies(Case(id="x", prompt_audio=case.prompt_audio, prompt_text="a", target_text="b"))
    first, again = system(case), system(case)
    assert first.sampling_rate == SR and first.stopped is None and first.compute_seconds > 0
    assert 512 - PATCH * HOP <= len(first.audio) <= 512  # the ground truth's frames, less those short of a patch
    np.testing.assert_array_equal(first.audio, again.audio)  # per-case seed
    assert case_seed(5, "c0") != case_seed(6, "c0")
    assert "prefix" in system.describe() and "max_new_patches" not in system.describe()


def test_evaluate_cli_runs_the_teacher_forced_row(tmp_path):
    from test_evaluate import StubASR, StubSpeaker

    pipe = get_dummy_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    cases = [
        Case(
            id="c0",
            prompt_audio=write_wav(tmp_path / "p.wav", tone(0.04)),
            prompt_text="the prompt",
            target_text="hello there",
            target_audio=write_wav(tmp_path / "t.wav", tone(0.064)),
        ),
        Case(
            id="ood",
            prompt_audio=write_wav(tmp_path / "q.wav", tone(0.05)),
            prompt_text="a recording",
            target_text="hello there",
        ),
    ]
    path = write_cases(cases, tmp_path / "cases.jsonl")
    results = ev.main(
        [
            "--cases",
            str(path),
            "--pipeline",
            str(tmp_path / "pipe"),
            "--out",
            str(tmp_path / "eval"),
            "--rows",
            "model,tf",
            "--steps",
            "2",
            "--label",
            "tiny",
        ],
        asr=StubASR(),
        speaker_encoder=StubSpeaker(),
    )
    tf, model = results["rows"]
    assert (tf["key"], tf["name"], tf["cases"], tf["failed"]) == ("tf", "tiny teacher-forced", 1, 0)
    assert tf["stop_rate"] is None and tf["duration_ratio"] == pytest.approx(1.0, abs=0.1)
    assert model["key"] == "model" and model["cases"] == 2
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["cases"][0]["rows"].keys() == {"tf", "model"}
    assert (tmp_path / "eval" / "wavs" / "tf" / "c0.wav").is_file()


@pytest.mark.parametrize("ctc", [False, True])
def test_probe_scores_every_prediction_and_the_ctc_head(tmp_path, ctc):
    spec = importlib.util.spec_from_file_location("ditar_tf_probe", RESEARCH / "teacher_forcing_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    pipe = get_dummy_pipeline(**({"ctc_loss_weight": 0.1, "ctc_position": "prediction"} if ctc else {}))
    pipe.save_pretrained(tmp_path / "pipe")
    cases = [
        Case(
            id="c0",
            prompt_audio=write_wav(tmp_path / "p.wav", tone(0.04)),
            prompt_text="the prompt",
            target_text="hello there",
            target_audio=write_wav(tmp_path / "t.wav", tone(0.064)),
        ),
        Case(
            id="ood",
            prompt_audio=write_wav(tmp_path / "q.wav", tone(0.05)),
            prompt_text="a recording",
            target_text="hello there",
        ),
    ]
    path = write_cases(cases, tmp_path / "cases.jsonl")
    means, ctc_rate = probe.main(
        ["--cases", str(path), "--pipeline", str(tmp_path / "pipe"), "--steps", "2", "--threads", "1"]
    )
    assert list(means) == [
        "previous real patch repeated",
        "prompt mean frame",
        "teacher-forced, g=0",
        "teacher-forced, g=1",
        "teacher-forced, g=2",
        "teacher-forced, g=4",
        "teacher-forced, g=1, wrong text",
        "teacher-forced, g=2, wrong text",
    ]
    assert all(np.isfinite(v) and v >= 0 for v in means.values())
    assert means["teacher-forced, g=2"] != means["teacher-forced, g=2, wrong text"]  # the text reaches LocDiT
    assert (ctc_rate is not None) == ctc and (ctc_rate is None or ctc_rate >= 0)
    assert probe.edit_distance([1, 2, 3], [1, 3]) == 1 and probe.edit_distance([], [4, 5]) == 2
    with pytest.raises(ValueError, match="at least 2 cases"):
        probe.main(["--cases", str(path), "--pipeline", str(tmp_path / "pipe"), "--wrong-text", "other-case"])
    only_prompts = write_cases(cases[1:], tmp_path / "prompt_only.jsonl")
    with pytest.raises(SystemExit, match="no case has target_audio"):
        probe.main(["--cases", str(only_prompts), "--pipeline", str(tmp_path / "pipe"), "--threads", "1"])


def _alignment_probe():
    spec = importlib.util.spec_from_file_location("ditar_alignment_probe", RESEARCH / "attention_alignment_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_alignment_scores_tell_a_following_head_from_a_blind_one():
    probe = _alignment_probe()
    text_len, prompt_text_len, num_prompt, num_target = 30, 10, 5, 8
    rows = num_prompt + num_target
    attention = np.zeros((1, 2, rows, text_len + 1 + rows))
    for j in range(num_target):  # head 0 reads the target text at a constant rate
        token = int(prompt_text_len + (j + 0.5) / num_target * (text_len - prompt_text_len))
        attention[0, 0, num_prompt + j, token] = 1.0
    attention[0, 1, :, :text_len] = 1.0 / text_len  # head 1 spreads over all the text
    scores = probe.head_scores(
        {
            "attention": attention,
            "text_len": text_len,
            "prompt_text_len": prompt_text_len,
            "num_prompt": num_prompt,
            "num_target": num_target,
        }
    )
    assert scores["error"][0, 0] <= 0.5 and scores["corr"][0, 0] > 0.99
    assert scores["error"][0, 1] > scores["constant_error"]  # the middle of the whole text, not of the target
    assert np.allclose(scores["text_mass"], 1.0)


def test_alignment_probe_runs_on_a_pipeline(tmp_path):
    probe = _alignment_probe()
    pipe = get_dummy_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    case = Case(
        id="c0",
        prompt_audio=write_wav(tmp_path / "p.wav", tone(0.04)),
        prompt_text="the prompt",
        target_text="hello there",
        target_audio=write_wav(tmp_path / "t.wav", tone(0.064)),
    )
    path = write_cases([case], tmp_path / "cases.jsonl")
    mean, constant = probe.main(
        [
            "--cases",
            str(path),
            "--pipeline",
            str(tmp_path / "pipe"),
            "--threads",
            "1",
            "--plot",
            str(tmp_path / "attention.png"),
        ]
    )
    config = pipe.model.config.text_config
    assert mean["error"].shape == (config.num_hidden_layers, config.num_attention_heads)
    assert np.all((mean["text_mass"] >= 0) & (mean["text_mass"] <= 1 + 1e-6)) and constant > 0
    assert (tmp_path / "attention.png").stat().st_size > 0
