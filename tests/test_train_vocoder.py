"""Vocoder training (examples/train_vocoder.py): discriminators, losses, segments, and a tiny GAN run that checkpoints,
resumes with the same losses and saves a vocoder folder that loads and speaks the right length."""

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

from train_vocoder import VocoderTrainConfig, main  # noqa: E402
from vocoder_training.data import SegmentSampler, hop_aligned, load_corpus_clips, load_folder_clips  # noqa: E402
from vocoder_training.discriminators import (  # noqa: E402
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    VocoderDiscriminators,
)
from vocoder_training.losses import (  # noqa: E402
    MelLoss,
    MultiResolutionSTFTLoss,
    SpectrumLoss,
    anti_wrapped,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

from modeling_ditar import DiTARFeatureExtractor  # noqa: E402

RATE = 16000


def _clip(index: int, seconds: float) -> np.ndarray:
    """A harmonic tone with a little noise: speech-like enough for a few training steps."""
    t = np.arange(int(RATE * seconds)) / RATE
    f0 = 110 + 30 * index
    tone = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 5))
    noise = 0.02 * np.random.default_rng(index).standard_normal(len(t))
    return (tone + noise).astype(np.float32)


def _corpus(folder: Path) -> Path:
    """A DatasetDict in build_corpus.py's layout (train / validation / test) with a few short clips."""
    from datasets import Dataset, DatasetDict

    def split(num, offset):
        clips = [_clip(i + offset, 0.3 + 0.2 * (i % 3)) for i in range(num)]
        return Dataset.from_dict(
            {
                "audio": [c.tolist() for c in clips],
                "sampling_rate": [RATE] * num,
                "text": ["a tone"] * num,
                "speaker_id": [f"spk{(i + offset) % 2}" for i in range(num)],
                "voice": ["synthetic"] * num,
                "duration": [len(c) / RATE for c in clips],
            }
        )

    path = folder / "corpus"
    DatasetDict({"train": split(6, 0), "validation": split(2, 10), "test": split(2, 20)}).save_to_disk(str(path))
    return path


def _config(folder: Path, **overrides) -> Path:
    config = {
        "feature_extractor": "modeling_ditar/default/processor",
        "vocoder": {"dim": 16, "intermediate_dim": 32, "num_layers": 1},
        "segment_seconds": 0.2,
        "batch_size": 2,
        "max_steps": 6,
        "learning_rate": 5e-4,
        "disc_start_step": 2,
        "mpd_periods": [2, 3],
        "mpd_channels": [4, 8],
        "mrd_resolutions": [[256, 64, 256]],
        "mrd_channels": 4,
        "stft_weight": 1.0,
        "checkpoint_every": 3,
        "eval_every": 6,
        "log_every": 1,
        "eval_clips": 2,
        "eval_seconds": 0.4,
        "num_threads": 1,
    }
    config.update(overrides)
    path = folder / "vocoder-test.json"
    path.write_text(json.dumps(config))
    return path


def _rows(run: Path) -> dict[int, dict]:
    with (run / "log.csv").open() as f:
        return {int(row["step"]): row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """A tiny corpus, its config and a 6-step run (2 mel-only steps, then GAN steps) never interrupted."""
    folder = tmp_path_factory.mktemp("vocoder-run")
    corpus, config = _corpus(folder), _config(folder)
    main(["--config", str(config), "--dataset", str(corpus), "--output-dir", str(folder / "straight")])
    return folder, corpus, config


def test_tiny_run_logs_finite_losses_and_saves_a_vocoder(straight_run):
    from modeling_ditar.vocoder_vocos import VocosVocoder

    folder, _, _ = straight_run
    run = folder / "straight"
    rows = _rows(run)
    assert sorted(rows) == list(range(1, 7))
    for step, row in rows.items():
        assert math.isfinite(float(row["mel_loss"])) and math.isfinite(float(row["generator_loss"]))
        # the discriminators switch on at disc_start_step = 2 (steps 0 and 1 are mel-only)
        assert math.isfinite(float(row["disc_loss"])) == (step > 2)
        assert math.isfinite(float(row["feature_matching_loss"])) == (step > 2)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-3", "step-6"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["reference", "step-6"]
    assert len(list((run / "samples" / "step-6").glob("*.wav"))) == 2
    step, mel_l1 = (run / "eval.csv").read_text().splitlines()[-1].split(",")
    assert step == "6" and math.isfinite(float(mel_l1))

    vocoder = VocosVocoder.from_pretrained(run / "vocoder")
    assert vocoder.config.dim == 16 and vocoder.sampling_rate == RATE and vocoder.hop_length == 320
    features = DiTARFeatureExtractor.from_pretrained(run / "feature_extractor").compute_log_mel(
        torch.from_numpy(_clip(3, 0.64))
    )
    with torch.no_grad():
        audio = vocoder(features[None])
    assert audio.shape == (1, (features.shape[0] - 1) * 320) and bool(torch.isfinite(audio).all())

    # a checkpoint's EMA generator exports as the same kind of folder (for a run cut off before its last evaluation),
    # into the checkpoint's own run (a copy here), whatever output_dir the config names
    _, _, config = straight_run
    exported = folder / "exported"
    shutil.copytree(run, exported)
    main(["--config", str(config), "--export-checkpoint", str(exported / "checkpoints/step-3")])
    earlier = VocosVocoder.from_pretrained(exported / "vocoder")
    assert {k: v for k, v in earlier.config.items() if not k.startswith("_")} == {
        k: v for k, v in vocoder.config.items() if not k.startswith("_")
    }
    assert not torch.equal(earlier.head.out.weight, vocoder.head.out.weight)  # the EMA of step 3, not of step 6


def test_resume_continues_at_the_right_step_with_the_same_losses(straight_run):
    folder, corpus, config = straight_run
    run = folder / "interrupted"
    args = ["--config", str(config), "--dataset", str(corpus), "--output-dir", str(run)]
    main([*args, "--stop-after", "3"])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-3"]
    assert not (run / "vocoder").exists()
    with pytest.raises(SystemExit, match="--resume"):
        main(args)
    # resuming with other features would train the checkpoint's vocoder on a mel layout it never saw
    other = DiTARFeatureExtractor.from_pretrained(ROOT / "modeling_ditar/default/processor")
    other.f_max = other.f_max / 2
    other.save_pretrained(folder / "other-features")
    (folder / "other").mkdir()
    other_config = _config(folder / "other", feature_extractor=str(folder / "other-features"))
    with pytest.raises(SystemExit, match=r"feature extractor differs .*f_max="):
        main(["--config", str(other_config), *args[2:], "--resume"])
    main([*args, "--resume"])
    straight, resumed = _rows(folder / "straight"), _rows(run)
    assert sorted(resumed) == list(range(1, 7))
    keys = ["generator_loss", "mel_loss", "stft_loss", "adversarial_loss", "feature_matching_loss", "disc_loss"]
    assert [[resumed[s][k] for k in keys] for s in range(4, 7)] == [[straight[s][k] for k in keys] for s in range(4, 7)]
    assert (run / "vocoder" / "config.json").is_file()


def test_a_resumed_run_logs_each_step_once(straight_run):
    """Steps trained after the last checkpoint are trained and logged again on resume: log.csv kept both rows."""
    folder, corpus, config = straight_run
    run = folder / "past-checkpoint"
    args = ["--config", str(config), "--dataset", str(corpus), "--output-dir", str(run)]
    main([*args, "--stop-after", "4"])  # checkpoint at step 3, step 4 logged
    main([*args, "--resume"])
    with (run / "log.csv").open() as f:
        assert [int(row["step"]) for row in csv.DictReader(f)] == list(range(1, 7))


def test_a_budgeted_run_resumes_at_the_learning_rate_it_had(straight_run, capsys):
    """--time-budget-min set max_steps in memory only: resumed, the vocoder headed for the config's max_steps with its
    learning rate back near the peak. The checkpoint saves the end the budget set, and a new budget goes on from the
    rate the run had."""
    folder, corpus, config = straight_run
    run = folder / "budgeted"
    args = ["--config", str(config), "--dataset", str(corpus), "--output-dir", str(run)]
    main([*args, "--time-budget-min", "1e-9"])  # spent at the first step: the run ends there, at min_lr_ratio
    assert sorted(_rows(run)) == [1] and (run / "checkpoints" / "step-1").is_dir()
    capsys.readouterr()
    main([*args, "--resume"])
    assert "max_steps 1: the end its --time-budget-min set (the config's is 6)" in capsys.readouterr().out
    assert sorted(_rows(run)) == [1]
    main([*args, "--resume", "--time-budget-min", "1e-9"])
    assert "--time-budget-min: the run goes on from step 1 (it was to end at 1)" in capsys.readouterr().out
    rows = _rows(run)
    assert sorted(rows) == [1, 2]
    # the lr goes on from the rate the run had at step 1 (without the saved end: the config's 6-step cosine, 0.78 x)
    assert float(rows[2]["lr"]) == pytest.approx(float(rows[1]["lr"]), rel=0.01)


def test_folder_of_audio_files_trains(tmp_path):
    import soundfile as sf

    (tmp_path / "wavs" / "sub").mkdir(parents=True)
    for i in range(3):
        sf.write(tmp_path / "wavs" / ("sub" if i else "") / f"clip{i}.wav", _clip(i, 0.5), RATE)
    sf.write(tmp_path / "wavs" / "clip_44k.flac", np.zeros(22050, np.float32) + _clip(9, 0.5)[:1], 44100)
    config = _config(tmp_path, max_steps=2, disc_start_step=1, checkpoint_every=2, eval_every=2, eval_clips=1)
    main(["--config", str(config), "--data", str(tmp_path / "wavs"), "--output-dir", str(tmp_path / "run")])
    assert sorted(_rows(tmp_path / "run")) == [1, 2]
    assert (tmp_path / "run" / "vocoder" / "diffusion_pytorch_model.safetensors").is_file()


def test_discriminator_output_shapes():
    audio = torch.randn(3, 1600)
    mpd = MultiPeriodDiscriminator(periods=[2, 3, 5], channels=[4, 8])
    logits, features = mpd(audio)
    assert len(logits) == len(features) == 3
    for period, scores, layers in zip([2, 3, 5], logits, features, strict=True):
        rows = math.ceil(1600 / period)
        for _ in range(2):  # two strided layers (stride 3 along the folded time axis, kernel 5, padding 2)
            rows = (rows - 1) // 3 + 1
        assert scores.shape == (3, rows * period)
        assert [layer.shape[1] for layer in layers] == [4, 8, 8, 1]
    mrd = MultiResolutionDiscriminator(resolutions=[[256, 64, 256], [512, 128, 512]], channels=4)
    logits, features = mrd(audio)
    assert [s.shape for s in logits] == [(3, 26 * 17), (3, 13 * 33)]  # frames x (bins halved three times)
    assert all(len(layers) == 6 and layers[0].shape[1] == 4 for layers in features)
    both = VocoderDiscriminators([2], [4], [[256, 64, 256]], 4)(audio)
    assert set(both) == {"mpd", "mrd"}
    with pytest.raises(ValueError, match=r"\[B, S\]"):
        mpd(audio[None])


def test_losses():
    fe = DiTARFeatureExtractor.from_pretrained(ROOT / "modeling_ditar" / "default" / "processor")
    audio = torch.from_numpy(np.stack([_clip(0, 0.4), _clip(1, 0.4)]))
    target = fe.compute_log_mel(audio)
    mel = MelLoss(fe)
    assert float(mel(audio, target)) == 0.0
    assert float(mel(audio.flip(0), target)) > 0.1
    with pytest.raises(ValueError, match="samples"):
        mel(audio[:, :-320], target)
    stft = MultiResolutionSTFTLoss([[256, 64, 256]])
    assert float(stft(audio, audio)) == 0.0 and float(stft(audio.flip(0), audio)) > 0.1

    confident_real, confident_fake = [torch.full((2, 5), 1.5)], [torch.full((2, 5), -2.0)]
    assert float(discriminator_loss(confident_real, confident_fake, "hinge")) == 0.0
    assert float(generator_adversarial_loss(confident_fake, "hinge")) == 3.0
    assert float(discriminator_loss([torch.ones(2, 5)], [torch.zeros(2, 5)], "lsgan")) == 0.0
    assert float(generator_adversarial_loss([torch.zeros(2, 5)], "lsgan")) == 1.0
    layers = [[torch.randn(2, 4, 7), torch.randn(2, 1, 7)]]
    assert float(feature_matching_loss(layers, layers)) == 0.0
    shifted = [[x + 0.5 for x in layers[0]]]
    assert abs(float(feature_matching_loss(layers, shifted)) - 1.0) < 1e-6  # 0.5 per layer, summed over 2 layers
    with pytest.raises(ValueError, match="hinge"):
        generator_adversarial_loss(confident_fake, "wasserstein")


def test_segments_are_hop_aligned_reproducible_and_padded():
    assert hop_aligned(1.0, 16000, 320) == 16000 and hop_aligned(0.305, 16000, 320) == 4800
    clips = [_clip(0, 1.0), _clip(1, 0.1)]
    sampler = SegmentSampler(clips, 3200, seed=3, gain_db=[-6, 0])
    first = sampler.batch(7, 16)
    assert first.shape == (16, 3200) and first.dtype == torch.float32
    assert torch.equal(first, sampler.batch(7, 16))  # a function of the step: a resumed run sees the same data
    assert not torch.equal(first, sampler.batch(8, 16)) and not torch.equal(first, sampler.batch(7, 16, rank=1))
    short = SegmentSampler([clips[1]], 3200, seed=0).batch(0, 2)
    assert torch.equal(short[:, :1600], torch.from_numpy(clips[1]).expand(2, -1)) and not short[:, 1600:].any()
    assert float(first.abs().max()) <= float(np.abs(clips[0]).max()) + 1e-6  # gains of -6..0 dB only attenuate


def test_the_evaluation_only_split_and_bad_settings_are_refused(tmp_path):
    corpus = _corpus(tmp_path)
    with pytest.raises(ValueError, match="evaluation-only"):
        load_corpus_clips(corpus, "test", RATE)
    assert len(load_corpus_clips(corpus, "train", RATE)) == 6
    assert len(load_corpus_clips(corpus, "train", 8000)[0]) == len(_clip(0, 0.3)) // 2  # resampled on load
    for bad, match in [({"max_stepz": 3}, "max_stepz"), ({"adversarial_loss": "wgan"}, "adversarial_loss")]:
        with pytest.raises(ValueError, match=match):
            VocoderTrainConfig.load(str(_config(tmp_path, **bad)))


def _labelled_corpus(folder: Path, name: str, train_labels: list[tuple[str, str, str]]) -> Path:
    """A DatasetDict whose train split has one clip per (speaker_id, source, voice) of `train_labels`."""
    from datasets import Dataset, DatasetDict

    def split(labels, offset):
        clips = [_clip(i + offset, 0.3) for i in range(len(labels))]
        return Dataset.from_dict(
            {
                "audio": [c.tolist() for c in clips],
                "sampling_rate": [RATE] * len(clips),
                "speaker_id": [speaker for speaker, _, _ in labels],
                "source": [source for _, source, _ in labels],
                "voice": [voice for _, _, voice in labels],
            }
        )

    path = folder / name
    validation = [("val00000", "espeak", "// espeak-ng -v en-us+v00000"), ("stock_en-us+m3", "espeak", "en-us+m3")]
    DatasetDict({"train": split(train_labels, 0), "validation": split(validation, 10)}).save_to_disk(str(path))
    return path


def test_evaluation_only_voices_are_refused_by_what_the_rows_say_and_a_split_folder_by_its_name(tmp_path):
    """Only the split's name was checked: `--dataset data/eval_corpus/test` (a split folder given directly) trained on
    the 12 stock espeak-ng voices, and so would a train split holding stock, flite or festival kal/slt rows."""
    legal = ("train00000", "espeak", "// espeak-ng -v en-us+v00000")
    for label, named in [
        (("stock_en-us+m3", "espeak", "en-us+m3"), r"stock_en-us\+m3 \(1 row\)"),
        (("pack:stock_en+f4", "recorded", "data/eval_corpus:test"), r"pack:stock_en\+f4"),  # a merged pack's prefix
        (("someone", "recorded", "en-us+croak"), r"voice 'en-us\+croak'"),  # a stock voice under another speaker id
        (("flite-kal", "flite", "flite kal"), "source 'flite'"),
        (("reader", "librivox", "LibriVox reader"), "source 'librivox'"),
        (("train00001", "festival", "festival:kal_diphone | pseudo pitch=1.1"), "voice 'festival:kal_diphone"),
        (("train00002", "festival", "festival:cmu_us_slt_arctic_hts"), "voice 'festival:cmu_us_slt_arctic_hts'"),
    ]:
        corpus = _labelled_corpus(tmp_path, f"corpus-{label[0]}", [legal, label])
        with pytest.raises(ValueError, match=rf"holds evaluation-only audio: {named}.*evaluation only"):
            load_corpus_clips(corpus, "train", RATE)
    flite = corpus.parent / "corpus-flite-kal"
    corpus = _labelled_corpus(tmp_path, "legal", [legal, ("train00001", "festival", "festival:ked_diphone")])
    assert len(load_corpus_clips(corpus, "train", RATE)) == 2
    # clips only listened to (the validation resynthesis) may be of evaluation-only voices
    assert len(load_corpus_clips(corpus, "validation", RATE, training=False)) == 2
    with pytest.raises(ValueError, match=r"stock_en-us\+m3"):
        load_corpus_clips(corpus, "validation", RATE)
    # a split folder given directly is that split: the test split is refused, another split than asked for too
    split_corpus = _corpus(tmp_path)
    with pytest.raises(ValueError, match="is the 'test' split of the corpus .*evaluation-only voices"):
        load_corpus_clips(split_corpus / "test", "train", RATE)
    with pytest.raises(ValueError, match="is the 'validation' split of the corpus .*, not its 'train' split"):
        load_corpus_clips(split_corpus / "validation", "train", RATE)
    assert len(load_corpus_clips(split_corpus / "train", "train", RATE)) == 6
    # the command line: one message, nothing written
    config = _config(tmp_path)
    for dataset, message in [(split_corpus / "test", "'test' split"), (flite, "source 'flite'")]:
        with pytest.raises(SystemExit, match=message):
            main(_args(config, dataset, tmp_path / "run"))
        assert not (tmp_path / "run").exists()


def test_a_folder_of_the_evaluation_sets_audio_is_refused(tmp_path):
    """`--data` files carry no labels: a folder under data/eval/ (flite and LibriVox audio of the evaluation sets), or
    one that holds it, is refused; another folder beside it trains."""
    import soundfile as sf

    for folder in ("data/eval/natural/wavs", "data/mine"):
        (tmp_path / folder).mkdir(parents=True)
        for i in range(2):
            sf.write(tmp_path / folder / f"clip{i}.wav", _clip(i, 0.5), RATE)
    config = _config(tmp_path, max_steps=1, eval_clips=1)
    for given in ("data/eval/natural/wavs", "data"):
        with pytest.raises(SystemExit, match=r"2 audio files of the evaluation sets \(under data/eval/.*train on"):
            main(["--config", str(config), "--data", str(tmp_path / given), "--output-dir", str(tmp_path / "run")])
        assert not (tmp_path / "run").exists()
    clips, names = load_folder_clips(tmp_path / "data" / "mine", RATE)
    assert names == ["clip0.wav", "clip1.wav"]


def test_spectrum_loss_is_zero_for_the_audio_own_stft_and_ignores_whole_turns_of_phase():
    from modeling_ditar.vocoder_vocos import VocosVocoder

    vocoder = VocosVocoder(dim=16, intermediate_dim=32, num_layers=1)
    audio = torch.from_numpy(np.stack([_clip(0, 0.4), _clip(1, 0.4)]))
    loss = SpectrumLoss(vocoder.n_fft, vocoder.hop_length, vocoder.win_length)
    true = loss.target(audio)
    # the target uses the vocoder's framing: its inverse STFT gives the audio back
    assert torch.allclose(vocoder.istft(true), audio, atol=1e-5)
    assert [float(x) for x in loss(true, audio)] == [0.0, 0.0]
    turned = true * torch.exp(torch.tensor(2j * math.pi))  # a whole turn: the same phase
    assert float(loss(turned, audio)[1]) < 1e-4
    magnitude, phase = loss(true * torch.exp(torch.tensor(0.5j)), audio)  # every phase off by 0.5 rad
    # instantaneous phase 0.5; differences across frequency and time unchanged
    assert float(magnitude) < 1e-8 and abs(float(phase) - 0.5) < 1e-3
    magnitude, _ = loss(true * 2, audio)
    assert abs(float(magnitude) - math.log(2) ** 2) < 1e-2  # (log 2)^2 wherever the floor does not clip
    assert torch.allclose(
        anti_wrapped(torch.tensor([0.1, 2 * math.pi + 0.1, -0.1, math.pi])), torch.tensor([0.1, 0.1, 0.1, math.pi])
    )
    with pytest.raises(ValueError, match="n_fft and hop"):
        loss(true[..., :-1], audio)
    convergence = SpectrumLoss(vocoder.n_fft, vocoder.hop_length, magnitude_loss="convergence_log_l1")
    assert float(convergence(true, audio)[0]) == 0.0
    # doubling every magnitude: convergence 1 plus log 2 wherever the floor does not clip
    assert abs(float(convergence(true * 2, audio)[0]) - (1 + math.log(2))) < 2e-2
    with pytest.raises(ValueError, match="magnitude_loss"):
        SpectrumLoss(1280, 320, magnitude_loss="l2")
    features = torch.randn(2, true.shape[-1], 80)
    waveform, spectrum = vocoder(features, return_spectrum=True)
    assert spectrum.shape == true.shape and torch.equal(waveform, vocoder(features))


def test_a_run_without_discriminators_learns_from_magnitude_and_phase(tmp_path):
    corpus = _corpus(tmp_path)
    config = _config(tmp_path, adversarial=False, magnitude_weight=1.0, phase_weight=1.0, max_steps=4, eval_every=4)
    run = ["--config", str(config), "--dataset", str(corpus), "--output-dir", str(tmp_path / "run")]
    main([*run, "--stop-after", "3"])
    main([*run, "--resume"])  # a checkpoint without discriminators resumes as one
    rows = _rows(tmp_path / "run")
    assert sorted(rows) == [1, 2, 3, 4]
    for row in rows.values():
        assert math.isfinite(float(row["magnitude_loss"])) and math.isfinite(float(row["phase_loss"]))
        assert math.isnan(float(row["disc_loss"])) and math.isnan(float(row["adversarial_loss"]))
    assert (tmp_path / "run" / "vocoder" / "config.json").is_file()
    with pytest.raises(ValueError, match="no loss"):
        VocoderTrainConfig.load(str(_config(tmp_path, adversarial=False, mel_weight=0.0, stft_weight=0.0)))


def test_a_magnitude_network_continues_through_griffin_lim(tmp_path):
    """The two-stage recipe: a magnitude network, then the same weights continued with `griffin_lim_iterations` set
    under `vocoder:` (overriding the saved config) and losses on Griffin-Lim's waveform, which reach the weights."""
    from modeling_ditar.vocoder_vocos import VocosVocoder

    corpus = _corpus(tmp_path)
    # no discriminators; the magnitude loss alone first, then waveform losses through Griffin-Lim as well
    common = dict(
        adversarial=False, magnitude_weight=1.0, magnitude_loss="convergence_log_l1", max_steps=2, eval_every=2
    )
    first = _config(tmp_path, mel_weight=0.0, stft_weight=0.0, **common)
    main(["--config", str(first), "--dataset", str(corpus), "--output-dir", str(tmp_path / "magnitude")])
    through = {"init_from": str(tmp_path / "magnitude" / "vocoder"), "vocoder": {"griffin_lim_iterations": 2}}
    second = _config(tmp_path, mel_weight=1.0, stft_weight=1.0, **common, **through)
    main(["--config", str(second), "--dataset", str(corpus), "--output-dir", str(tmp_path / "through")])
    for row in _rows(tmp_path / "through").values():
        assert float(row["grad_norm_g"]) > 0 and math.isfinite(float(row["stft_loss"]))
    before = VocosVocoder.from_pretrained(tmp_path / "magnitude" / "vocoder")
    after = VocosVocoder.from_pretrained(tmp_path / "through" / "vocoder")
    assert before.config.griffin_lim_iterations is None and after.config.griffin_lim_iterations == 2
    assert not torch.equal(before.head.out.weight, after.head.out.weight)


@pytest.mark.parametrize(
    "name",
    [
        "vocoder-tiny.yaml",
        "vocoder-cpu.yaml",
        "vocoder-cpu-phase.yaml",
        "vocoder-cpu-integrated.yaml",
        "vocoder-cpu-recurrent.yaml",
        "vocoder-cpu-magnitude.yaml",
        "vocoder-cpu-magnitude-sc.yaml",
        "vocoder-cpu-magnitude-gl.yaml",
        "vocoder-gpu.yaml",
    ],
)
def test_shipped_configs_load(name):
    cfg = VocoderTrainConfig.load(str(EXAMPLES / "configs" / name))
    assert cfg.dataset and cfg.feature_extractor == "modeling_ditar/default/processor"


@pytest.mark.slow  # about a minute on 2 busy cores: builds a tiny espeak-ng corpus (needs espeak-ng and fortunes)
def test_gpu_script_smoke_run_on_cpu(tmp_path):
    """examples/scripts/train_vocoder_on_gpu.sh end to end with SMOKE=1 and the tiny config, as on a GPU machine but
    with this interpreter (SKIP_WHEELS: the bundle's wheels are for the GPU image's Python)."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SKIP_WHEELS": "1",
        "SMOKE": "1",
        "RUN_DIR": str(tmp_path / "run"),
        "DATA_DIR": str(tmp_path / "corpus"),
    }
    script = EXAMPLES / "scripts" / "train_vocoder_on_gpu.sh"
    result = subprocess.run(
        ["bash", str(script), str(tmp_path / "out"), "0.2", "examples/configs/vocoder-tiny.yaml"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "out" / "vocoder" / "config.json").is_file()
    assert (tmp_path / "out" / "logs.tar.gz").is_file() and list((tmp_path / "out" / "samples").glob("*/*.wav"))
    assert "expected" in result.stdout and "log-mel L1" in result.stdout


def test_the_command_line_names_what_cannot_work_before_anything_is_written(tmp_path):
    config = _config(tmp_path, dataset=str(tmp_path / "no-corpus"), output_dir=str(tmp_path / "run"))
    for extra, message in [
        (["--max-steps", "-1"], "--max-steps -1: give at least 1"),
        (["--time-budget-min", "0"], "--time-budget-min 0: give a number of minutes > 0"),
        ([], "dataset .*no-corpus' does not exist: build one"),
    ]:
        with pytest.raises(SystemExit, match=message):
            main(["--config", str(config), *extra])
    assert not (tmp_path / "run").exists()


def _args(config: Path, corpus: Path, out: Path, *extra) -> list[str]:
    return ["--config", str(config), "--dataset", str(corpus), "--output-dir", str(out), *extra]


def test_an_output_dir_that_is_not_this_script_run_is_refused(tmp_path):
    corpus = _corpus(tmp_path)
    config = _config(tmp_path, max_steps=4, checkpoint_every=3, eval_every=4)
    # a copy of a pipeline folder: its vocoder/ would be replaced
    pipeline = tmp_path / "pipeline"
    (pipeline / "vocoder").mkdir(parents=True)
    (pipeline / "vocoder" / "config.json").write_text("{}")
    with pytest.raises(
        SystemExit, match=r"not empty and is not a train_vocoder.py run .*vocoder.*another --output-dir"
    ):
        main(_args(config, corpus, pipeline))
    assert sorted(p.name for p in pipeline.iterdir()) == ["vocoder"]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SystemExit, match="is a file"):
        main(_args(config, corpus, tmp_path / "a-file"))
    # --resume with no checkpoint is refused before the data is read (an empty folder would not load)
    (tmp_path / "no-audio").mkdir()
    with pytest.raises(SystemExit, match="--resume: no checkpoint in"):
        main(_args(config, tmp_path / "no-audio", pipeline, "--resume"))
    # a wrapper's log file (train.log.txt, written by tee before the run starts) does not make a folder used
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log.txt").write_text("")
    main(_args(config, corpus, run, "--stop-after", "1"))  # stops before its first checkpoint
    with pytest.raises(SystemExit, match="run that saved no checkpoint"):  # would append to its log.csv
        main(_args(config, corpus, run))
    assert sorted(_rows(run)) == [1]


def test_a_diverging_run_stops_before_saving_anything_non_finite(tmp_path):
    corpus = _corpus(tmp_path)
    # the losses are logged every 4 steps: the checkpoint of step 3 finds the NaN first
    config = _config(tmp_path, learning_rate=1e8, adversarial=False, log_every=4, max_steps=6)
    with pytest.raises(SystemExit, match=r"training diverged at step 3: .*NaN or Inf"):
        main(_args(config, corpus, tmp_path / "run"))
    run = tmp_path / "run"
    assert not list((run / "checkpoints").glob("step-*")) and not (run / "vocoder").exists()
    config = _config(tmp_path, learning_rate=1e8, adversarial=False, log_every=1, max_steps=6)
    with pytest.raises(SystemExit, match=r"training diverged at step 2: the logged .*mel_loss"):
        main(_args(config, corpus, tmp_path / "logged"))
    rows = _rows(tmp_path / "logged")  # step 1 only, finite
    assert sorted(rows) == [1] and math.isfinite(float(rows[1]["mel_loss"]))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"grad_clip": 0}, "grad_clip must be > 0"),
        ({"learning_rate": 0}, "learning_rate must be > 0"),
        ({"disc_learning_rate": 0}, "disc_learning_rate must be > 0"),
        ({"min_lr_ratio": -0.5}, r"min_lr_ratio must lie in \[0, 1\]"),
        ({"decay_start": 1.0}, "never decay"),
        ({"eval_clips": 0}, "eval_clips must be at least 1"),
        ({"weight_decay": -1}, "weight_decay must be >= 0"),
        ({"adam_betas": [1.5, 0.9]}, r"adam_betas must both lie in \[0, 1\)"),
        ({"num_threads": 0}, "num_threads must be at least 1"),
        ({"ema_decay": 1.0}, r"ema_decay must lie in \[0, 1\)"),
        ({"mpd_periods": []}, "mpd_periods must be a non-empty list"),
        ({"mrd_resolutions": [[256, 64]]}, r"mrd_resolutions must be a non-empty list of \[n_fft"),
        ({"stft_resolutions": [[256, 64]]}, "stft_resolutions must be"),
        ({"gain_db": ["a", 0]}, "gain_db must be"),
    ],
)
def test_settings_out_of_range_are_refused(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        VocoderTrainConfig.load(str(_config(tmp_path, **bad)))


def test_a_segment_shorter_than_a_window_is_refused_and_late_discriminators_are_noted(tmp_path, capsys):
    corpus = _corpus(tmp_path)
    config = _config(tmp_path, segment_seconds=0.001)
    with pytest.raises(
        SystemExit, match=r"segments of 320 samples .* shorter than .*: set segment_seconds to at least"
    ):
        main(_args(config, corpus, tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    (tmp_path / "no-audio").mkdir()
    config = _config(tmp_path, disc_start_step=6, max_steps=6)
    with pytest.raises(SystemExit, match="no-audio holds no"):
        main(["--config", str(config), "--data", str(tmp_path / "no-audio"), "--output-dir", str(tmp_path / "run")])
    assert "the discriminators never switch on" in capsys.readouterr().out


def test_resume_refuses_another_recipe_and_a_finished_run(straight_run, tmp_path):
    folder, corpus, _ = straight_run
    run = folder / "straight"
    log = (run / "log.csv").read_text()
    for changes, named in [
        ({"adversarial": False}, "adversarial=False (the run: True)"),
        ({"segment_seconds": 0.4}, "segment_seconds=0.4 (the run: 0.2)"),
        ({"vocoder": {"dim": 32, "intermediate_dim": 32, "num_layers": 1}}, "vocoder="),
        ({"mrd_channels": 8}, "mrd_channels=8"),
    ]:
        with pytest.raises(SystemExit, match=r"--resume: the recipe differs .*" + re.escape(named)):
            main(_args(_config(tmp_path, **changes), corpus, run, "--resume"))
    with pytest.raises(SystemExit, match=r"dataset="):
        main(_args(_config(tmp_path), folder, run, "--resume"))
    # max_steps (and how often it logs, saves and evaluates) may change; a finished run has nothing to train
    with pytest.raises(SystemExit, match=r"at step 6 and max_steps is 6: nothing to train. Raise --max-steps"):
        main(_args(_config(tmp_path, log_every=2), corpus, run, "--resume"))
    assert (run / "log.csv").read_text() == log


def test_export_checkpoint_writes_into_its_run_and_checks_it(straight_run, tmp_path):
    folder, _, config = straight_run
    run = tmp_path / "copy"
    shutil.copytree(folder / "straight", run)
    other = DiTARFeatureExtractor.from_pretrained(ROOT / "modeling_ditar/default/processor")
    other.log_floor = 1e-3
    other.save_pretrained(tmp_path / "other-features")
    checkpoint = str(run / "checkpoints" / "step-3")
    mismatched = _config(tmp_path, feature_extractor=str(tmp_path / "other-features"))
    with pytest.raises(SystemExit, match=r"--export-checkpoint: the feature extractor differs .*log_floor="):
        main(["--config", str(mismatched), "--export-checkpoint", checkpoint])
    bigger = _config(tmp_path, vocoder={"dim": 32, "intermediate_dim": 32, "num_layers": 1})
    with pytest.raises(SystemExit, match="do not fit the generator"):
        main(["--config", str(bigger), "--export-checkpoint", checkpoint])
    with pytest.raises(SystemExit, match="is not a checkpoint of train_vocoder.py"):
        main(["--config", str(config), "--export-checkpoint", str(run)])
    assert json.loads((run / "vocoder" / "config.json").read_text())["dim"] == 16  # the run's own, untouched


def test_bad_inputs_end_in_one_line_errors(tmp_path):
    from datasets import Dataset, DatasetDict

    corpus = _corpus(tmp_path)
    out = tmp_path / "run"
    empty = tmp_path / "empty-train"
    columns = {"audio": [], "sampling_rate": []}
    valid = Dataset.from_dict({"audio": [_clip(0, 0.3).tolist()], "sampling_rate": [RATE]})
    DatasetDict({"train": Dataset.from_dict(columns), "validation": valid}).save_to_disk(str(empty))
    (tmp_path / "fe-typo.json").write_text(json.dumps({"sampling_rate": 16000, "n_melz": 80}))
    (tmp_path / "fe-broken.json").write_text("{sampling_rate: 16000")
    (tmp_path / "fe-empty").mkdir()
    cases = [
        ({}, empty, "the train split .* has no rows"),
        ({"feature_extractor": str(tmp_path / "fe-typo.json")}, corpus, r"'n_melz' \(did you mean 'num_mel_bins'\?\)"),
        ({"feature_extractor": str(tmp_path / "fe-broken.json")}, corpus, "is not valid JSON"),
        ({"feature_extractor": str(tmp_path / "fe-empty")}, corpus, "is not a processor or feature-extractor folder"),
        ({"init_from": str(ROOT / "modeling_ditar/default")}, corpus, "holds no trained VocosVocoder"),
        ({"init_from": str(tmp_path / "nowhere")}, corpus, "is not a vocoder folder"),
        ({"vocoder": {"dimm": 16}}, corpus, r"unknown `vocoder:` settings .*'dimm' \(did you mean 'dim'\?\)"),
        ({"vocoder": {"dim": "16"}}, corpus, "do not build a VocosVocoder: `dim` must be a positive integer"),
        ({"vocoder": {"dim": -4}}, corpus, "do not build a VocosVocoder"),
    ]
    for changes, dataset, message in cases:
        with pytest.raises(SystemExit, match=message) as raised:
            main(_args(_config(tmp_path, **changes), dataset, out))
        assert str(raised.value).startswith("error: ") and "\n" not in str(raised.value)
    assert not list(out.glob("checkpoints/step-*")) and not (out / "vocoder").exists()
