"""One saved pipeline folder, every entry point: DiTARPipeline, DiffusionPipeline, transformers'
pipeline("text-to-speech") / ("text-to-audio"), AutoModelForTextToWaveform, AutoModel and AutoProcessor. Each one
synthesises audio from the same folder, in this process (the package imported) and in a subprocess where the package
cannot be imported (remote code), and the waveforms agree with the DiTARPipeline's."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from unittest import mock

import numpy as np
import pytest
import torch
from model_helpers import ScriptedStopHead
from pipeline_helpers import VOICE_TEXT, get_dummy_pipeline
from test_remote_code import HIDE_PACKAGE, ROOT
from transformers import AutoModel, AutoModelForTextToWaveform, AutoProcessor, GenerationConfig, pipeline

from modeling_ditar import DiTARForConditionalGeneration, DiTARForTextToSpeech, DiTARPipeline, DiTARProcessor

TEXT = "hello there"
# float rounding: weights read from the file by transformers vs the pipeline's aligned copies
ATOL = 1e-6


def _reference(pipe, text=TEXT, seed=0, **kwargs):
    out = pipe(text, generator=torch.Generator().manual_seed(seed), num_candidates=1, **kwargs)
    return out.audios[0][: out.audio_lengths[0]]


def _voice_conversation(audio, transcript: str, text: str = TEXT) -> list[dict]:
    """transformers' text-to-speech pipeline's form of a voice: a message with the prompt audio (8 kHz, the tiny
    model's rate) and its transcript, then the text to speak."""
    voice = [{"type": "audio", "audio": audio, "sampling_rate": 8000}, {"type": "text", "text": transcript}]
    return [{"role": "user", "content": voice}, {"role": "user", "content": text}]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("entry") / "pipeline"
    pipe = get_dummy_pipeline(ctc_loss_weight=0.1)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(folder)
    np.save(folder.parent / "reference.npy", _reference(pipe))
    np.save(folder.parent / "prompt.npy", pipe.default_voice[0])
    return folder


def test_the_folder_root_is_a_transformers_model_and_processor(saved):
    config = json.loads((saved / "config.json").read_text())
    assert config["architectures"] == ["DiTARForTextToSpeech"]
    assert config["auto_map"]["AutoModelForTextToWaveform"] == "modeling_ditar.DiTARForTextToSpeech"
    assert config["vocoder_config"]["vocoder_type"] == "griffin_lim"
    assert (saved / "generation_config.json").is_file() and (saved / "processor_config.json").is_file()
    # the weights are stored once on disk: the root's file is model/'s (a hard link where the file system allows)
    assert (saved / "model.safetensors").read_bytes() == (saved / "model" / "model.safetensors").read_bytes()
    assert (saved / "default_voice" / "prompt.txt").read_text().strip() == VOICE_TEXT
    assert not (saved / "processor" / "default_voice").exists()


def test_text_to_speech_pipeline_speaks_in_the_default_voice(saved):
    tts = pipeline("text-to-speech", model=str(saved))
    assert isinstance(tts.model, DiTARForTextToSpeech)
    out = tts(TEXT, generate_kwargs={"generator": torch.Generator().manual_seed(0), "num_candidates": 1})
    assert set(out) == {"audio", "sampling_rate"} and out["sampling_rate"] == 8000
    np.testing.assert_allclose(out["audio"], np.load(saved.parent / "reference.npy"), atol=ATOL)


def test_text_to_speech_pipeline_matches_the_prompt_spectrum_like_the_diffusers_pipeline(tmp_path):
    """A folder whose generation config asks for prompt spectrum (and spread) matching speaks the same through
    transformers' pipeline as through DiTARPipeline, and differently from a folder without it."""
    pipe = get_dummy_pipeline(ctc_loss_weight=0.1)
    pipe.set_progress_bar_config(disable=True)
    plain = _reference(pipe, max_new_patches=30)
    pipe.model.generation_config.prompt_spectrum_match = 1.0
    pipe.model.generation_config.prompt_spread_match = 0.5
    pipe.save_pretrained(tmp_path / "matched")
    reference = _reference(pipe, max_new_patches=30)
    assert not np.allclose(reference, plain)
    tts = pipeline("text-to-speech", model=str(tmp_path / "matched"))
    out = tts(
        TEXT,
        generate_kwargs={"generator": torch.Generator().manual_seed(0), "num_candidates": 1, "max_new_patches": 30},
    )
    np.testing.assert_allclose(out["audio"], reference, atol=ATOL)


def test_text_to_audio_pipeline_takes_a_batch_and_the_default_candidates(saved):
    tta = pipeline("text-to-audio", model=str(saved))
    outs = tta([TEXT, "good day to you"])
    assert len(outs) == 2 and all(o["audio"].ndim == 1 and o["audio"].size > 0 for o in outs)
    assert all(np.abs(o["audio"]).max() < 1.0 for o in outs)


def test_text_to_speech_pipeline_warns_when_the_derived_cap_ended_a_text(saved, caplog):
    """transformers' pipeline drops the model's `stopped`: where the cap derived from the text's length ended the
    speech (the model did not stop), the model warns as DiTARPipeline does; a cap the caller chose says nothing."""
    tts = pipeline("text-to-speech", model=str(saved))
    tts.model.generation_config.min_max_new_patches = 2  # a short derived cap keeps the test fast
    tts.model.stop_head = ScriptedStopHead([None])  # never stops
    settings = {"generator": torch.Generator().manual_seed(0), "num_candidates": 1}
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        tts(TEXT, generate_kwargs=settings)
    assert "The text did not end on its own: the patch cap derived from the text length ended it" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        tts(TEXT, generate_kwargs={**settings, "max_new_patches": 3})
    assert "did not end on its own" not in caplog.text


def test_text_to_speech_pipeline_batches_texts_as_it_speaks_them_one_by_one(saved):
    """batch_size=2: transformers splits the model's output row by row (the output's sampling rate, a field, could
    not be split: a TypeError). With a generator per row, each row speaks as its text alone does."""
    tts = pipeline("text-to-speech", model=str(saved))
    texts = [TEXT, "good day to you"]
    settings = {"num_candidates": 1, "max_new_patches": 30}
    generators = [torch.Generator().manual_seed(seed) for seed in (0, 1)]
    batched = tts(texts, batch_size=2, generate_kwargs={**settings, "generator": generators})
    alone = [
        tts(text, generate_kwargs={**settings, "generator": torch.Generator().manual_seed(seed)})
        for seed, text in enumerate(texts)
    ]
    assert [o["sampling_rate"] for o in batched] == [8000, 8000]
    for one, other in zip(batched, alone, strict=True):
        np.testing.assert_allclose(one["audio"], other["audio"], atol=ATOL)


def test_text_to_speech_pipeline_clones_a_voice_given_as_a_conversation(saved):
    tts = pipeline("text-to-speech", model=str(saved))
    prompt = np.load(saved.parent / "prompt.npy")
    conversation = _voice_conversation(prompt, VOICE_TEXT)
    out = tts(conversation, generate_kwargs={"generator": torch.Generator().manual_seed(0), "num_candidates": 1})
    # the conversation's voice is the default voice's audio, so the result is the same
    np.testing.assert_allclose(out["audio"], np.load(saved.parent / "reference.npy"), atol=ATOL)


def test_text_to_speech_pipeline_passes_processor_kwargs_for_plain_text_and_names_bad_messages(saved):
    """transformers hands `processor_kwargs` to the processor as one keyword for plain text (a TypeError before); a
    message without 'content' made the pipeline pass the conversation on as texts, refused as 'not a string'."""
    tts = pipeline("text-to-speech", model=str(saved))
    prompt = np.load(saved.parent / "prompt.npy")
    voice = tts.processor.create_voice(prompt, VOICE_TEXT, sampling_rate=8000)
    settings = {"generator": torch.Generator().manual_seed(0), "num_candidates": 1}
    out = tts(TEXT, processor_kwargs={"voice": voice}, generate_kwargs=settings)
    # the voice is the default voice's audio, so the result is the same
    np.testing.assert_allclose(out["audio"], np.load(saved.parent / "reference.npy"), atol=ATOL)
    with pytest.raises(ValueError, match="looks like a conversation message, but {'role': 'user'} has no 'content'"):
        tts([{"role": "user"}, {"role": "user", "content": TEXT}])


def test_auto_classes_load_the_root(saved):
    assert isinstance(AutoModelForTextToWaveform.from_pretrained(saved), DiTARForTextToSpeech)
    model = AutoModel.from_pretrained(saved)
    assert type(model) is DiTARForConditionalGeneration
    processor = AutoProcessor.from_pretrained(saved)
    assert isinstance(processor, DiTARProcessor) and processor.default_voice[2] == VOICE_TEXT
    inputs = processor(TEXT)  # the default voice is the prompt
    assert "prompt_features" in inputs
    features = model.generate(**inputs, generator=torch.Generator().manual_seed(0), num_candidates=1)
    assert features.features.shape[-1] == 8


def test_pipeline_classes_load_the_folder(saved):
    pipe = DiTARPipeline.from_pretrained(saved)
    pipe.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_reference(pipe), np.load(saved.parent / "reference.npy"))


def test_generation_config_loads_without_warnings(saved, caplog):
    with caplog.at_level(logging.WARNING):
        model = AutoModelForTextToWaveform.from_pretrained(saved)
    assert not [r for r in caplog.records if "generation" in r.getMessage().lower()]
    assert model.generation_config.num_candidates == GenerationConfig.from_pretrained(saved).num_candidates


REMOTE = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from diffusers import DiffusionPipeline
    from transformers import AutoModel, AutoModelForTextToWaveform, AutoProcessor, pipeline

    folder, reference = sys.argv[1], np.load(sys.argv[2])
    report = {}
    def close(audio):
        return bool(audio.shape == reference.shape and np.abs(audio - reference).max() < 1e-6)
    seed = lambda: torch.Generator().manual_seed(0)

    tts = pipeline("text-to-speech", model=folder, trust_remote_code=True)
    report["tts_class"] = type(tts.model).__name__
    report["tts"] = close(tts("hello there", generate_kwargs={"generator": seed(), "num_candidates": 1})["audio"])
    tta = pipeline("text-to-audio", model=folder, trust_remote_code=True)
    report["tta_batch"] = [o["audio"].size > 0 for o in tta(["hello there", "good day"])]

    model = AutoModelForTextToWaveform.from_pretrained(folder, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    inputs = processor("hello there")
    report["auto_tts"] = close(model.generate(**inputs, generator=seed(), num_candidates=1).audio[0].numpy())
    features = AutoModel.from_pretrained(folder, trust_remote_code=True).generate(**inputs, generator=seed())
    report["auto_model"] = type(features).__name__

    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("hello there", generator=seed(), num_candidates=1)
    report["diffusers"] = close(out.audios[0][: out.audio_lengths[0]])
    report["modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "modeling_ditar")
    print("REPORT " + json.dumps(report))
    """
)


def test_every_entry_point_works_where_the_package_cannot_be_imported(saved):
    script = HIDE_PACKAGE.replace("REPO", repr(str(ROOT))) + REMOTE
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(saved.parent),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_MODULES_CACHE": str(saved.parent / "modules"),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(saved), str(saved.parent / "reference.npy")],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(saved.parent),
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "Do you wish to run the custom code" not in result.stdout + result.stderr
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert report == {
        "tts_class": "DiTARForTextToSpeech",
        "tts": True,
        "tta_batch": [True, True],
        "auto_tts": True,
        "auto_model": "DiTARGenerationOutput",
        "diffusers": True,
        "modules": [],
    }


def test_best_of_k_is_the_same_policy_in_the_pipeline_and_the_model(saved):
    pipe = DiTARPipeline.from_pretrained(saved)
    pipe.set_progress_bar_config(disable=True)
    texts = [TEXT, "good day to you"]
    out = pipe(texts, num_candidates=3, generator=[torch.Generator().manual_seed(s) for s in (1, 2)])
    model = AutoModelForTextToWaveform.from_pretrained(saved)
    inputs = AutoProcessor.from_pretrained(saved)(texts)
    speech = model.generate(**inputs, num_candidates=3, generator=[torch.Generator().manual_seed(s) for s in (1, 2)])
    for row in range(2):
        np.testing.assert_allclose(speech.audio[row].numpy(), out.audios[row][: out.audio_lengths[row]], atol=ATOL)
    assert speech.stopped.tolist() == out.stopped


def test_text_to_speech_pipeline_cuts_a_long_voice_prompt_as_ditar_pipeline_does(saved, monkeypatch):
    """transformers' pipeline used a voice prompt longer than the model's training prompts whole, where DiTARPipeline
    cuts it at a pause with a warning: the same inputs gave other audio."""
    from test_prompt_progress_level import speech_with_gaps
    from transformers.utils import logging as transformers_logging

    from modeling_ditar import prompt_audio

    monkeypatch.setattr(prompt_audio, "MAX_PROMPT_SECONDS", 0.45)  # the tiny model's scale (500 frames/s)
    audio, _ = speech_with_gaps([0.1, -0.12, 0.1, -0.12, 0.1])  # 0.54 s at 8 kHz
    transcript = "one two. three four. five six."
    conversation = _voice_conversation(audio, transcript)
    tts = pipeline("text-to-speech", model=str(saved))
    logger = transformers_logging.get_logger("modeling_ditar.processing_ditar")
    with mock.patch.object(logger, "warning") as warning:
        out = tts(conversation, generate_kwargs={"generator": torch.Generator().manual_seed(0), "num_candidates": 1})
    (message,), _ = warning.call_args
    assert "cut at a pause" in message and "'one two. three four.'" in message
    pipe = DiTARPipeline.from_pretrained(saved)
    pipe.set_progress_bar_config(disable=True)
    expected = _reference(pipe, prompt_audio=audio, prompt_text=transcript, sampling_rate=8000)
    np.testing.assert_allclose(out["audio"], expected, atol=ATOL)


def test_the_processor_cuts_a_long_voice_prompt_as_ditar_pipeline_does(saved, monkeypatch):
    """`model.generate(**processor(text, prompt_audio=..., prompt_text=...))` used a voice prompt longer than the
    model's training prompts whole, where DiTARPipeline cuts it at a pause: the same inputs gave other audio. One
    prompt for several texts is cut and warned about once."""
    from test_prompt_progress_level import speech_with_gaps
    from transformers.utils import logging as transformers_logging

    from modeling_ditar import prompt_audio

    monkeypatch.setattr(prompt_audio, "MAX_PROMPT_SECONDS", 0.45)  # the tiny model's scale (500 frames/s)
    audio, _ = speech_with_gaps([0.1, -0.12, 0.1, -0.12, 0.1])  # 0.54 s at 8 kHz
    transcript = "one two. three four. five six."
    processor = AutoProcessor.from_pretrained(saved)
    model = AutoModelForTextToWaveform.from_pretrained(saved)
    logger = transformers_logging.get_logger("modeling_ditar.processing_ditar")
    with mock.patch.object(logger, "warning") as warning:
        inputs = processor([TEXT, TEXT], prompt_audio=audio, prompt_text=transcript, sampling_rate=8000)
    assert warning.call_count == 1
    (message,), _ = warning.call_args
    assert "cut at a pause" in message and "'one two. three four.'" in message
    generators = [torch.Generator().manual_seed(0) for _ in range(2)]
    speech = model.generate(**inputs, num_candidates=1, generator=generators)
    pipe = DiTARPipeline.from_pretrained(saved)
    pipe.set_progress_bar_config(disable=True)
    expected = _reference(pipe, prompt_audio=audio, prompt_text=transcript, sampling_rate=8000)
    np.testing.assert_allclose(speech.audio[0].numpy(), expected, atol=ATOL)


def test_generate_warns_of_speech_far_shorter_than_its_text_at_the_prompts_rate(saved):
    """DiTARPipeline warns when speech ends far sooner than its text can be said; `model.generate` (and transformers'
    text-to-speech pipeline) sees token ids, not the text, and said nothing. It goes by the voice prompt's speaking
    rate: under a third of the time the text's tokens take at that rate is too short."""
    from pipeline_helpers import spoken
    from transformers.utils import logging as transformers_logging

    processor = AutoProcessor.from_pretrained(saved)
    model = AutoModelForTextToWaveform.from_pretrained(saved)
    text = "hello there, this is a much longer sentence to say"
    inputs = processor(text, prompt_audio=spoken(1.2), prompt_text="one two three", sampling_rate=8000)
    logger = transformers_logging.get_logger("modeling_ditar.modeling_ditar")
    for stop_after, warned in ((1, True), (None, False)):  # None: the patch cap ends it, warned about on its own
        model.stop_head = ScriptedStopHead([stop_after])
        with mock.patch.object(logger, "warning") as warning:
            model.generate(**inputs, num_candidates=1, generator=torch.Generator().manual_seed(0))
        said = " ".join(str(call.args[0]) for call in warning.call_args_list)
        assert ("ended much shorter than it can be spoken" in said) == warned, said
