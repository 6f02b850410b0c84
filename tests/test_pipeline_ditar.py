"""DiTARPipeline: anatomy, outputs, batching, persistence, default voice, long texts and bad inputs (tiny, CPU)."""

import json

import numpy as np
import pytest
import torch
from pipeline_helpers import (
    FEATURE_DIM,
    HOP,
    PATCH,
    SR,
    VOICE_TEXT,
    get_dummy_components,
    get_dummy_inputs,
    get_dummy_pipeline,
    spoken,
    tone,
    write_wav,
)

from modeling_ditar import DiTARPipeline, DiTARPipelineOutput, PatchStep
from modeling_ditar import pipeline_ditar as pipeline_module
from modeling_ditar.pipeline_ditar import split_sentences


@pytest.fixture(scope="module")
def pipe():
    return get_dummy_pipeline()


def samples(patches: int) -> int:
    """Waveform length of `patches` generated patches (T frames -> (T - 1) * hop samples)."""
    return (patches * PATCH - 1) * HOP


def assert_close_audio(actual, expected, rel=1e-5):
    """Equal up to float rounding: padded/batched matmuls round differently in the last bits, and Griffin-Lim (fed the
    random-weight model's loud features) amplifies that, so the tolerance is relative to the peak."""
    np.testing.assert_allclose(actual, expected, atol=rel * float(np.abs(expected).max()), rtol=0)


class ScriptedStop(torch.nn.Module):
    """Stop head that ends row r after its `stop_after[r]`-th patch."""

    def __init__(self, stop_after):
        super().__init__()
        self.stop_after, self.calls = stop_after, 0

    def forward(self, hidden):
        self.calls += 1
        logits = torch.full((hidden.shape[0], 1), -30.0)
        for row, after in enumerate(self.stop_after):
            if after is not None and self.calls >= after:
                logits[row] = 30.0
        return logits


# ------------------------------------------------------------------------------------------------------------------
# anatomy and outputs


def test_components_and_sample_rate(pipe):
    assert set(pipe.components) == {"model", "processor", "scheduler", "vocoder"}
    assert pipe.sample_rate == SR == pipe.vocoder.sampling_rate
    out = pipe(**get_dummy_inputs())
    assert isinstance(out, DiTARPipelineOutput)
    assert out.stopped == [False]  # the random stop head never fires: max_new_patches ended it


def test_output_type_np(pipe):
    out = pipe(**get_dummy_inputs(text=["hello there", "a second text"]))
    assert isinstance(out.audios, np.ndarray) and out.audios.dtype == np.float32
    assert out.audios.shape == (2, samples(3))
    assert out.audio_lengths == [samples(3)] * 2
    assert np.isfinite(out.audios).all() and np.abs(out.audios).max() > 0


def test_output_type_pt_equals_np(pipe):
    np_out = pipe(**get_dummy_inputs(output_type="np"))
    pt_out = pipe(**get_dummy_inputs(output_type="pt"))
    assert isinstance(pt_out.audios, torch.Tensor) and pt_out.audios.dtype == torch.float32
    np.testing.assert_array_equal(pt_out.audios.numpy(), np_out.audios)
    assert pt_out.audio_lengths == np_out.audio_lengths


def test_output_type_features_are_denormalised(pipe):
    inputs = get_dummy_inputs(output_type="features")
    out = pipe(**inputs)
    assert isinstance(out.audios, torch.Tensor) and out.audios.shape == (1, 3 * PATCH, FEATURE_DIM)
    assert out.audio_lengths == [3 * PATCH]
    # the same generation through the model directly, de-normalised with the feature extractor's statistics
    model_inputs = pipe.processor(
        inputs["text"], prompt_text=inputs["prompt_text"], prompt_audio=inputs["prompt_audio"], sampling_rate=SR
    )
    generated = pipe.model.generate(
        **model_inputs,
        max_new_patches=3,
        num_inference_steps=2,
        guidance_scale=2.0,
        temperature=0.5,
        generator=torch.Generator().manual_seed(0),
        scheduler=pipe.scheduler,
    )
    expected = pipe.processor.feature_extractor.denormalize(generated.features)
    torch.testing.assert_close(out.audios, expected)
    # and the waveform is those features through the vocoder
    audio = pipe(**get_dummy_inputs()).audios[0]
    np.testing.assert_allclose(pipe._streaming_vocoder().decode(out.audios[0]).numpy(), audio, atol=1e-6, rtol=0)


def test_feature_rows_are_padded_with_silence_and_waveforms_with_zeros(pipe, monkeypatch):
    """Rows of different lengths: log-mel rows are padded with the features of silence (so padding vocoded by mistake
    stays quiet), waveform rows with zeros; `audio_lengths` gives each row's real length."""
    short, long = torch.full((4, FEATURE_DIM), -1.0), torch.full((8, FEATURE_DIM), -2.0)
    monkeypatch.setattr(pipe, "_generate_rows", lambda *args, **kwargs: ([short, long], [True, True]))
    out = pipe(**get_dummy_inputs(text=["one", "two"], output_type="features"))
    floor = pipe.processor.feature_extractor.log_mel_floor
    assert out.audio_lengths == [4, 8]
    torch.testing.assert_close(out.audios[0, :4], short)
    assert bool((out.audios[0, 4:] == floor).all()) and floor < -5
    waves = pipe(**get_dummy_inputs(text=["one", "two"], output_type="pt"))
    assert waves.audio_lengths[0] < waves.audio_lengths[1]
    assert bool((waves.audios[0, waves.audio_lengths[0] :] == 0).all())


def test_return_dict_false_gives_a_tuple(pipe):
    out = pipe(**get_dummy_inputs(return_dict=False))
    assert isinstance(out, tuple) and len(out) == 1
    np.testing.assert_array_equal(out[0], pipe(**get_dummy_inputs()).audios)


def test_audio_lengths_and_stopped_per_row():
    pipe = get_dummy_pipeline()
    pipe.model.stop_head = ScriptedStop([2, None])
    out = pipe(**get_dummy_inputs(text=["one", "two"]))
    assert out.stopped == [True, False]
    assert out.audio_lengths == [samples(2), samples(3)]
    assert out.audios.shape == (2, samples(3))
    assert not out.audios[0, samples(2) :].any()  # zero padding after a row's end
    pipe.model.stop_head = ScriptedStop([1, None])
    features = pipe(**get_dummy_inputs(text=["one", "two"], output_type="features"))
    assert features.audio_lengths == [PATCH, 3 * PATCH]
    assert features.stopped == [True, False]


def test_row_that_stops_after_one_short_patch_is_vocoded():
    pipe = get_dummy_pipeline()
    pipe.model.stop_head = ScriptedStop([1, None])  # 1 patch = 2 frames = 16 samples < n_fft // 2 = 32
    out = pipe(**get_dummy_inputs(text=["one", "two"]))
    assert out.audio_lengths == [samples(1), samples(3)]


def test_seed_reproduces_and_differs(pipe):
    a = pipe(**get_dummy_inputs(seed=0)).audios
    np.testing.assert_array_equal(a, pipe(**get_dummy_inputs(seed=0)).audios)
    assert not np.array_equal(a, pipe(**get_dummy_inputs(seed=1)).audios)


def test_callback_on_patch_end(pipe):
    calls = []
    pipe(**get_dummy_inputs(max_new_patches=4, callback_on_patch_end=lambda p, i, s: calls.append((p, i, s))))
    assert [i for _, i, _ in calls] == [0, 1, 2, 3]
    assert all(p is pipe for p, _, _ in calls)
    assert all(isinstance(s, PatchStep) and s.patch.shape == (1, PATCH, FEATURE_DIM) for _, _, s in calls)


def test_progress_bar(capsys):
    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=False)
    pipe(**get_dummy_inputs(max_new_patches=3))
    assert "3/3" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    pipe(**get_dummy_inputs(max_new_patches=3))
    assert "3/3" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------------
# batching


def test_batch_rows_equal_single_calls_with_per_row_generators(pipe):
    texts = ["hello there", "a much longer second text"]
    batch = pipe(**get_dummy_inputs(text=texts, generator=[torch.Generator().manual_seed(s) for s in (3, 4)]))
    for row, (text, seed) in enumerate(zip(texts, (3, 4), strict=True)):
        single = pipe(**get_dummy_inputs(text=text, seed=seed))
        assert_close_audio(batch.audios[row], single.audios[0])


def test_batch_with_one_prompt_per_text(pipe):
    prompts, transcripts = [tone(0.04), tone(0.06, freq=300.0)], ["the prompt", "another one"]
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    batch = pipe(
        **get_dummy_inputs(text=["first", "second"], prompt_audio=prompts, prompt_text=transcripts, generator=gens)
    )
    assert batch.audios.shape == (2, samples(3))
    for row in range(2):
        single = pipe(
            **get_dummy_inputs(
                text=["first", "second"][row], prompt_audio=prompts[row], prompt_text=transcripts[row], seed=5 + row
            )
        )
        assert_close_audio(batch.audios[row], single.audios[0])


# ------------------------------------------------------------------------------------------------------------------
# default voice and persistence


def test_default_voice_is_used_without_prompt(pipe):
    voice, rate, transcript = pipe.default_voice
    assert transcript == VOICE_TEXT and rate == SR
    with_default = pipe("hello there", max_new_patches=3, generator=torch.Generator().manual_seed(0))
    explicit = pipe(
        "hello there",
        prompt_audio=voice,
        prompt_text=VOICE_TEXT,
        sampling_rate=rate,
        max_new_patches=3,
        generator=torch.Generator().manual_seed(0),
    )
    np.testing.assert_array_equal(with_default.audios, explicit.audios)


def test_no_prompt_and_no_default_voice_is_an_error():
    pipe = get_dummy_pipeline(default_voice=False)
    with pytest.raises(ValueError, match="no prompt_audio was given and this pipeline has no default voice"):
        pipe("hello there")


def test_save_and_load_round_trip_gives_identical_audio(tmp_path, pipe):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert {"model", "processor", "scheduler", "vocoder"} <= set(index)
    assert (tmp_path / "default_voice" / "prompt.wav").is_file()
    assert (tmp_path / "default_voice" / "prompt.txt").read_text().strip() == VOICE_TEXT
    loaded = DiTARPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.sample_rate == pipe.sample_rate
    np.testing.assert_array_equal(loaded.default_voice[0], pipe.default_voice[0])
    for kwargs in (get_dummy_inputs(), dict(text="hello there", max_new_patches=3)):  # explicit prompt, default voice
        a = pipe(**{**kwargs, "generator": torch.Generator().manual_seed(7)}).audios
        b = loaded(**{**kwargs, "generator": torch.Generator().manual_seed(7)}).audios
        np.testing.assert_array_equal(a, b)


def test_save_without_default_voice(tmp_path):
    get_dummy_pipeline(default_voice=False).save_pretrained(tmp_path)
    assert not (tmp_path / "default_voice").exists()
    assert DiTARPipeline.from_pretrained(tmp_path).default_voice is None


def test_from_pretrained_without_argument_uses_embedded_default(tmp_path, monkeypatch, pipe):
    monkeypatch.setattr(pipeline_module, "EMBEDDED_DEFAULT", tmp_path / "not-installed")
    with pytest.raises(ValueError, match="No embedded default checkpoint"):
        DiTARPipeline.from_pretrained()
    pipe.save_pretrained(tmp_path / "default")
    monkeypatch.setattr(pipeline_module, "EMBEDDED_DEFAULT", tmp_path / "default")
    loaded = DiTARPipeline.from_pretrained()
    assert loaded.default_voice is not None and loaded.default_voice[2] == VOICE_TEXT


def test_the_installed_embedded_default_loads_in_float32_and_speaks(tmp_path):
    """The checkpoint shipped in modeling_ditar/default: stored in float16 (<= 25 MB), computed in float32."""
    if not (pipeline_module.EMBEDDED_DEFAULT / "model_index.json").is_file():
        pytest.skip("no embedded default in this checkout")
    size = sum(f.stat().st_size for f in pipeline_module.EMBEDDED_DEFAULT.rglob("*") if f.is_file())
    assert size <= 25 * 2**20, size
    pipe = DiTARPipeline.from_pretrained()
    assert pipe.model.dtype == torch.float32 and pipe.default_voice is not None
    # best of 4 samples its candidates with the one-step candidate LocDiT, the kept one with the 4-step LocDiT
    settings = pipe.model.generation_settings()
    assert pipe.model.candidate_locdit is not None and settings.candidate_num_inference_steps == 1
    assert settings.num_candidates == 4 and settings.num_inference_steps == 4
    # its products in bfloat16 where the CPU multiplies bfloat16 natively, else float32
    from modeling_ditar.low_precision import cpu_multiplies_bfloat16

    assert pipe.config.matmul_dtype == "auto"
    assert pipe.model.matmul_dtype == (torch.bfloat16 if cpu_multiplies_bfloat16() else torch.float32)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("Hello there.", num_inference_steps=2, max_new_patches=6, generator=torch.Generator().manual_seed(0))
    audio = out.audios[0][: out.audio_lengths[0]]
    assert audio.shape[0] > 0 and np.isfinite(audio).all() and np.abs(audio).max() > 0


def test_set_default_voice_checks_its_inputs(pipe):
    # named as set_default_voice's own arguments (`audio`, `text`), not as a call's prompt_audio/prompt_text
    with pytest.raises(ValueError, match="default voice cannot be used: audio: .*silent"):
        pipe.set_default_voice(np.zeros(400, np.float32), "text", sampling_rate=SR)
    with pytest.raises(ValueError, match="`text` is empty"):
        pipe.set_default_voice(tone(), "  ", sampling_rate=SR)


def count_prompt_audio_work(monkeypatch, pipe) -> dict:
    """Counts, for `pipe`, of prompt audio prepared (`load_prompt_audio`), files decoded and resamplings."""
    import soundfile

    from modeling_ditar import audio_utils, feature_extraction_ditar, processing_ditar

    counts = {"prepared": 0, "decoded": 0, "resampled": 0}

    def counting(key, function):
        def wrapper(*args, **kwargs):
            counts[key] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(pipe.processor, "load_prompt_audio", counting("prepared", pipe.processor.load_prompt_audio))
    monkeypatch.setattr(soundfile, "read", counting("decoded", soundfile.read))
    for module in (audio_utils, processing_ditar, feature_extraction_ditar):
        monkeypatch.setattr(module, "resample_audio", counting("resampled", module.resample_audio))
    return counts


def test_a_new_voice_is_read_and_resampled_once(tmp_path, monkeypatch):
    """set_default_voice prepared the recording four times (to cut it, twice to check it, once to store it) and
    create_voice twice: each read the file and resampled it again."""
    from modeling_ditar import prompt_audio

    pipe = get_dummy_pipeline(default_voice=False)
    recording = spoken(0.6, sr=16000)
    path = write_wav(tmp_path / "voice.wav", recording, sr=16000)
    expected = pipe.processor.load_prompt_audio(path, target_rate=SR).numpy()  # what a call makes of the file
    counts = count_prompt_audio_work(monkeypatch, pipe)
    pipe.set_default_voice(path, VOICE_TEXT)
    assert counts == {"prepared": 1, "decoded": 1, "resampled": 1}
    np.testing.assert_array_equal(pipe.default_voice[0], expected)
    counts.update(prepared=0, decoded=0, resampled=0)
    pipe.set_default_voice(recording, VOICE_TEXT, sampling_rate=16000)
    assert counts == {"prepared": 1, "decoded": 0, "resampled": 1}
    counts.update(prepared=0, decoded=0, resampled=0)
    voice = pipe.create_voice(path, VOICE_TEXT)
    assert counts == {"prepared": 1, "decoded": 1, "resampled": 1}
    assert voice.prompt_features.shape[0] == len(expected) // HOP + 1
    # a recording cut at a pause: the kept part is checked as a prompt of its own, the file still read once
    monkeypatch.setattr(prompt_audio, "MAX_PROMPT_SECONDS", 0.4)
    counts.update(prepared=0, decoded=0, resampled=0)
    pipe.set_default_voice(path, "one two three four five six")
    assert counts == {"prepared": 2, "decoded": 1, "resampled": 1}
    assert len(pipe.default_voice[0]) <= 0.4 * SR


# ------------------------------------------------------------------------------------------------------------------
# long texts


def test_split_sentences_short_text_is_one_piece():
    assert split_sentences("  Hello   there.\nHow are you?  ") == ["Hello there. How are you?"]
    assert split_sentences("One. Two. Three.", max_chars=16) == ["One. Two. Three."]


def test_split_sentences_at_sentence_ends():
    text = "First sentence here. Second one! Is this the third? Yes; fourth. " * 3
    pieces = split_sentences(text, max_chars=40)
    assert " ".join(pieces) == " ".join(text.split())
    assert all(len(p) <= 40 for p in pieces)
    assert all(p[-1] in ".!?;" for p in pieces)  # every cut is at a sentence end
    # sentences are packed greedily: no two neighbours would fit together
    assert all(len(a) + 1 + len(b) > 40 for a, b in zip(pieces, pieces[1:], strict=False))
    # a closing quote after the full stop still ends the sentence; a decimal point does not
    assert split_sentences('He said "Stop." Then he left.', max_chars=20) == ['He said "Stop."', "Then he left."]
    assert split_sentences("Pi is 3.14159 roughly. Yes.", max_chars=22) == ["Pi is 3.14159 roughly.", "Yes."]


def test_split_sentences_long_sentence_at_commas_then_spaces():
    sentence = "aaaa bbbb, cccc dddd, eeee ffff gggg hhhh iiii jjjj kkkk."
    pieces = split_sentences(sentence, max_chars=20)
    # clauses stay whole (a greedy split at spaces would give "aaaa bbbb, cccc"); the over-long last clause is split
    # at spaces
    assert pieces == ["aaaa bbbb,", "cccc dddd, eeee ffff", "gggg hhhh iiii jjjj", "kkkk."]
    assert " ".join(pieces) == sentence and all(len(p) <= 20 for p in pieces)
    assert split_sentences("x" * 30 + " y.", max_chars=10) == ["x" * 30, "y."]  # a word is never cut
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("text", max_chars=0)


def test_split_sentences_never_makes_a_wordless_piece():
    # an emoji or a dash between two full pieces joins a neighbour: alone it would have nothing to speak
    full = "word " * 3 + "end."
    assert split_sentences(f"{full} \U0001f600! {full}", max_chars=len(full)) == [f"{full} \U0001f600!", full]
    assert split_sentences(f"-- ... {full} {full}", max_chars=len(full)) == [f"-- ... {full}", full]
    assert split_sentences("!!! ??? ...", max_chars=4) == ["!!! ??? ..."]  # the tokenizer names this one


def test_long_text_with_an_emoji_sentence_is_spoken():
    pipe = get_dummy_pipeline()
    sentence = "This is one sentence of a long paragraph, it is. "  # 5 make a piece of 244 characters
    long_sentence = ("and so on " * 24).strip() + "."  # 239 characters
    text = sentence * 5 + "\U0001f389" * 10 + "! " + long_sentence  # the emoji fits with neither neighbour
    out = pipe(**get_dummy_inputs(text=text, max_new_patches=1))
    assert out.audio_lengths[0] > 0


def test_long_text_gives_audio_for_every_segment(monkeypatch):
    pipe = get_dummy_pipeline()
    sentence = "This is one sentence of a long paragraph. "
    text = sentence * 15  # > MAX_CHARS_PER_SEGMENT
    segments = split_sentences(text)
    assert len(segments) == 3
    spoken, calls = [], []
    encode = pipe.encode_inputs
    monkeypatch.setattr(pipe, "encode_inputs", lambda texts, *a, **kw: spoken.extend(texts) or encode(texts, *a, **kw))
    out = pipe(**get_dummy_inputs(text=text, max_new_patches=2, callback_on_patch_end=lambda *a: calls.append(a[1])))
    assert spoken == segments  # in order, each with the same voice prompt
    assert calls == [0, 1] * 3
    pause = pipe._pause_frames().shape[0]
    frames = 3 * 2 * PATCH + 2 * pause
    assert out.audio_lengths == [(frames - 1) * HOP]
    # every segment's stretch of audio carries sound
    seg = 2 * PATCH * HOP
    starts = [0, (2 * PATCH + pause) * HOP, 2 * (2 * PATCH + pause) * HOP]
    assert all(np.abs(out.audios[0, s : s + seg]).max() > 1e-3 for s in starts)
    features = pipe(**get_dummy_inputs(text=text, max_new_patches=2, output_type="features"))
    assert features.audio_lengths == [frames]


def test_long_text_in_a_batch_with_a_short_one():
    pipe = get_dummy_pipeline()
    long = "Another sentence in a long text. " * 10
    out = pipe(
        **get_dummy_inputs(
            text=[long, "short"], max_new_patches=2, generator=[torch.Generator().manual_seed(s) for s in (1, 2)]
        )
    )
    assert out.audio_lengths[1] == samples(2)
    assert out.audio_lengths[0] > 2 * samples(2)


# ------------------------------------------------------------------------------------------------------------------
# prompt audio formats


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
@pytest.mark.parametrize("layout", ["mono", "stereo", "int16"])
def test_prompt_formats_are_converted(pipe, rate, layout):
    wave = tone(0.05, sr=rate)
    audio = {"mono": wave, "stereo": np.stack([wave, 0.5 * wave]), "int16": np.round(wave * 32767).astype(np.int16)}
    out = pipe(**get_dummy_inputs(prompt_audio=audio[layout], sampling_rate=rate))
    assert out.audios.shape == (1, samples(3)) and np.isfinite(out.audios).all() and np.abs(out.audios).max() > 0


@pytest.mark.parametrize("rate, subtype", [(8000, "PCM_16"), (44100, "PCM_16"), (22050, "FLOAT")])
def test_prompt_files_are_converted(pipe, tmp_path, rate, subtype):
    wave = tone(0.05, sr=rate)
    path = write_wav(tmp_path / "p.wav", np.stack([wave, wave], axis=1), sr=rate, subtype=subtype)  # stereo file
    out = pipe(**get_dummy_inputs(prompt_audio=path, sampling_rate=None))
    assert out.audios.shape == (1, samples(3)) and np.abs(out.audios).max() > 0


# ------------------------------------------------------------------------------------------------------------------
# bad inputs: each a clear error naming the argument


BAD_CALLS = [
    (dict(text=""), "text is empty"),
    (dict(text=" \t\n "), "text is empty"),
    (dict(text=["fine", "  "]), r"text\[1\] of the 2 texts is empty"),
    (dict(text=[]), "text must be a string or a non-empty list"),
    (dict(text=None), "text must be a string"),
    (dict(text="你好"), "text.*not in the vocabulary"),
    (dict(text="@@@@"), "text.*not in the vocabulary"),
    (dict(prompt_text=None), "prompt_audio was given without prompt_text"),
    (dict(prompt_audio=None), "prompt_text was given without prompt_audio"),
    (dict(prompt_text="你好"), "`prompt_text` .*vocabulary"),
    (dict(prompt_audio=np.zeros(0, np.float32)), "prompt_audio: .*empty"),
    (dict(prompt_audio=tone(0.001)), "prompt_audio is shorter than the model needs"),
    (dict(prompt_audio=np.zeros(400, np.float32)), "prompt_audio: .*silent"),
    (dict(prompt_audio=np.r_[tone(), np.nan].astype(np.float32)), "prompt_audio: .*NaN"),
    (dict(prompt_audio=np.r_[tone(), -np.inf].astype(np.float32)), "prompt_audio: .*Inf"),
    (dict(sampling_rate=None), "sampling_rate is missing"),
    (dict(text=["a", "b", "c"], prompt_audio=[tone(), tone()]), "got 2 prompt_audio for 3 texts"),
    (dict(text=["a", "b", "c"], prompt_text=["x", "y"]), "got 2 prompt_text for 3 texts"),
    (dict(guidance_scale=-0.5), "guidance_scale` must be a finite number >= 0"),
    (dict(guidance_scale="2"), "guidance_scale"),
    (dict(temperature=-0.1), r"temperature` must be a number in \[0, 1\]"),
    (dict(temperature=1.5), r"temperature` must be a number in \[0, 1\]"),
    (dict(num_inference_steps=0), "num_inference_steps` must be an integer >= 1"),
    (dict(num_inference_steps=2.5), "num_inference_steps` must be an integer >= 1"),
    (dict(max_new_patches=0), "max_new_patches` must be an integer >= 1"),
    (dict(max_new_patches=-3), "max_new_patches` must be an integer >= 1"),
    (dict(output_type="wav"), "output_type must be one of"),
    (dict(generator=[torch.Generator()] * 3), "got 3 generators for a batch of 1"),
]


@pytest.mark.parametrize("kwargs, match", BAD_CALLS, ids=[m for _, m in BAD_CALLS])
def test_bad_inputs_raise_a_clear_error(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe(**get_dummy_inputs(**kwargs))


def test_bad_prompt_files_raise_a_clear_error(pipe, tmp_path):
    with pytest.raises(FileNotFoundError, match="prompt_audio: .*nope.wav"):
        pipe(**get_dummy_inputs(prompt_audio=str(tmp_path / "nope.wav")))
    fake = tmp_path / "fake.wav"
    fake.write_text("RIFF? no, just text")
    with pytest.raises(ValueError, match="prompt_audio: Could not read audio file"):
        pipe(**get_dummy_inputs(prompt_audio=str(fake)))
    for name, audio, match in [
        ("empty.wav", np.zeros(0, np.float32), "empty"),
        ("silent.wav", np.zeros(800, np.float32), "silent"),
        ("short.wav", tone(0.001), "shorter than the model needs"),
    ]:
        with pytest.raises(ValueError, match=f"prompt_audio.*{match}"):
            pipe(**get_dummy_inputs(prompt_audio=write_wav(tmp_path / name, audio), sampling_rate=None))


def test_components_must_agree():
    components = get_dummy_components()
    components["model"].config.feature_dim = FEATURE_DIM + 1
    with pytest.raises(ValueError, match="feature_dim"):
        DiTARPipeline(**components)


def test_the_same_generator_twice_in_a_list_is_warned_about(caplog):
    """`[torch.manual_seed(0), torch.manual_seed(1)]` is torch's global generator twice: the rows share one random
    stream and neither reproduces its text alone, so the call warns; distinct generators say nothing."""
    import logging

    pipe = get_dummy_pipeline()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        generators = [torch.manual_seed(0), torch.manual_seed(1), torch.Generator().manual_seed(2)]
        pipe(**get_dummy_inputs(text=["one", "two", "three"], generator=generators))
    assert "generator[0] and generator[1] are the same torch.Generator" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        pipe(**get_dummy_inputs(text=["one", "two"], generator=[torch.Generator().manual_seed(s) for s in (0, 1)]))
    assert "same torch.Generator" not in caplog.text


def test_no_generator_samples_from_the_global_one_as_an_explicit_global_generator_does():
    """As in diffusers, `torch.manual_seed(0); pipe(text)` and `pipe(text, generator=torch.manual_seed(0))` give the
    same audio (the global generator either way), also when every text is sampled as several candidates, in one call
    and streamed."""
    pipe = get_dummy_pipeline(ctc_loss_weight=1.0)  # candidates are ranked by the CTC head
    for candidates in (1, 3):
        inputs = get_dummy_inputs(num_candidates=candidates, generator=None)
        torch.manual_seed(0)
        implicit = pipe(**inputs).audios
        explicit = pipe(**{**inputs, "generator": torch.manual_seed(0)}).audios
        np.testing.assert_array_equal(implicit, explicit)
        torch.manual_seed(0)
        streamed = np.concatenate(list(pipe.stream(**inputs)))
        np.testing.assert_array_equal(streamed, explicit[0][: len(streamed)])


def test_a_text_the_derived_cap_ended_is_warned_about(caplog):
    """Where the model failed to stop and the cap for the text's length ended the text, one-shot and streaming warn
    (the caller may not look at `stopped`); a cap the caller chose, or a text that stopped, says nothing."""
    import logging

    pipe = get_dummy_pipeline()
    pipe.model.generation_config.min_max_new_patches = 2  # a short derived cap keeps the test fast
    pipe.model.stop_head = ScriptedStop([2, None])
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        out = pipe(**get_dummy_inputs(text=["one", "two"], max_new_patches=None))
    assert out.stopped == [True, False]
    assert "Text 1 of the batch did not end on its own" in caplog.text and "max_new_patches" in caplog.text
    caplog.clear()
    pipe.model.stop_head = ScriptedStop([None])
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        stream = pipe.stream(**get_dummy_inputs(text="one", max_new_patches=None))
        chunks = list(stream)
    assert chunks and stream.stopped is False and "The text did not end on its own" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        pipe(**get_dummy_inputs(text="one"))  # max_new_patches=3, chosen by the caller
        pipe.model.stop_head = ScriptedStop([1])
        pipe(**get_dummy_inputs(text="one", max_new_patches=None))
    assert "did not end" not in caplog.text


def test_speech_that_ended_much_sooner_than_its_text_can_be_said_is_warned_about(caplog):
    """A transcript that does not match its prompt can make the model end the speech after a word or two, and the call
    returned it as a success: one-shot and streaming warn, naming the text; speech of a plausible length, a short text
    and a text the patch cap ended say nothing of it."""
    import logging

    long_text = "hello there, this is a much longer sentence to say"  # 50 characters: over a second of speech
    pipe = get_dummy_pipeline()
    pipe.model.stop_head = ScriptedStop([1, 2])
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        out = pipe(**get_dummy_inputs(text=[long_text, "one"], max_new_patches=None))
    assert out.stopped == [True, True]
    assert "Text 0 of the batch ended much shorter than it can be spoken" in caplog.text
    assert "check prompt_text word for word" in caplog.text
    caplog.clear()
    pipe.model.stop_head = ScriptedStop([1])
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        chunks = list(pipe.stream(**get_dummy_inputs(text=long_text, max_new_patches=None)))
    assert chunks and "The text ended much shorter than it can be spoken" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        pipe.model.stop_head = ScriptedStop([300])  # 1.2 s of the tiny model's speech: long enough
        assert pipe(**get_dummy_inputs(text=long_text, max_new_patches=400)).stopped == [True]
        pipe.model.stop_head = ScriptedStop([None])
        pipe(**get_dummy_inputs(text=long_text))  # cut by the caller's cap of 3 patches, not ended by the model
    assert "much shorter" not in caplog.text


def test_settings_that_would_break_the_next_call_are_refused_when_set():
    """`pipe.to("meta")` dropped the weights' values and `pipe.to(torch.complex64)` was accepted, both failing at the
    next call deep inside; a misspelt progress-bar option failed inside tqdm at the next call; `return_dict="False"`
    (a string) returned the output object."""
    pipe = get_dummy_pipeline()
    expected = pipe(**get_dummy_inputs()).audios
    for args in (("meta",), (torch.device("meta"),), (torch.complex64,), ("cpu", torch.int8)):
        with pytest.raises(ValueError, match="meta device would drop|computes in real floating point"):
            pipe.to(*args)
    for options in ({"disabel": True}, {"total": 5}):
        with pytest.raises(TypeError, match="which tqdm does not take here"):
            pipe.set_progress_bar_config(**options)
    for options, message in (
        ({"position": "x"}, "position got 'x', which tqdm cannot use"),
        ({"disable": "yes"}, "disable got 'yes'"),
        ({"ncols": "a"}, "ncols got 'a'"),
    ):
        with pytest.raises(TypeError, match=message):
            pipe.set_progress_bar_config(**options)
    with pytest.raises(TypeError, match="return_dict must be True or False, got 'False'"):
        pipe(**get_dummy_inputs(), return_dict="False")
    assert pipe.to("cpu", torch.float32) is pipe
    np.testing.assert_array_equal(pipe(**get_dummy_inputs()).audios, expected)  # unchanged by the refusals


def test_a_call_whose_settings_fix_the_generation_config_runs_with_the_progress_bar():
    """The progress bar's length estimate read the generation config without the call's settings: a config whose early
    prune point (16) is past its prune point (12) failed a call that moves the prune point to 24, a valid call."""
    pipe = get_dummy_pipeline(ctc_loss_weight=0.1)
    config = pipe.model.generation_config
    config.num_candidates, config.candidate_prune_after_patches, config.candidate_early_prune_after_patches = 2, 12, 16
    inputs = get_dummy_inputs(max_new_patches=None, candidate_prune_after_patches=24)
    assert pipe(**inputs).audios[0].size > 0
    assert (
        sum(
            chunk.size
            for chunk in pipe.stream(**get_dummy_inputs(max_new_patches=None, candidate_prune_after_patches=24))
        )
        > 0
    )


def test_a_stream_keeps_its_progress_bar_across_a_call_and_closes_it_when_dropped():
    """A plain call between two chunks closed the stream's bar (frozen at the count it had while the stream went on);
    a stream closed before its end left its bar open and installed on the pipeline."""
    import io

    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=False, file=io.StringIO())
    bars = []
    make_bar = pipe.progress_bar

    def recording_bar(*args, **kwargs):
        bars.append(make_bar(*args, **kwargs))
        return bars[-1]

    pipe.progress_bar = recording_bar
    stream = iter(pipe.stream(**get_dummy_inputs(text="one", max_new_patches=40)))
    next(stream)
    at_first_chunk = bars[0].n
    pipe(**get_dummy_inputs(max_new_patches=3))
    rest = list(stream)
    stream_bar, call_bar = bars
    assert rest and call_bar.n == 3 and at_first_chunk < stream_bar.n == stream_bar.total
    dropped = iter(pipe.stream(**get_dummy_inputs(text="one", max_new_patches=8)))
    next(dropped)
    dropped.close()
    assert bars[-1].disable  # a stream closed before its end closes its bar


def test_a_saved_folder_does_not_record_where_its_pipeline_was_loaded_from(tmp_path):
    """diffusers wrote the loading folder's absolute path (`_name_or_path`: /home/name/...) into model_index.json, and
    pushes published it; loading a saved folder records its own path in memory."""
    import json

    get_dummy_pipeline().save_pretrained(tmp_path / "first")
    loaded = DiTARPipeline.from_pretrained(tmp_path / "first")
    assert loaded.name_or_path == str(tmp_path / "first")
    loaded.save_pretrained(tmp_path / "second")
    index = json.loads((tmp_path / "second" / "model_index.json").read_text())
    assert "_name_or_path" not in index and str(tmp_path) not in json.dumps(index)
    assert DiTARPipeline.from_pretrained(tmp_path / "second").name_or_path == str(tmp_path / "second")


def test_a_save_over_a_pipeline_folder_keeps_the_users_files_and_a_folder_of_other_files_is_refused(tmp_path):
    """Saving in place (a changed default voice, a cloned Hub repository) replaced the whole folder: its model card,
    `.git` and the user's notes were deleted. What a save writes is still replaced (no stale file stays), the rest is
    kept; a folder of other files is no pipeline folder and is refused before anything is written."""
    pipe = get_dummy_pipeline()
    folder = tmp_path / "pipe"
    pipe.save_pretrained(folder)
    (folder / "README.md").write_text("my card\n")
    (folder / "notes.txt").write_text("keep me\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / "model" / "stale.safetensors").write_text("old shard")
    (folder / "old_remote_code.py").write_text("# written by an older save\n")
    pipe.save_pretrained(folder)
    assert (folder / "README.md").read_text() == "my card\n" and (folder / "notes.txt").read_text() == "keep me\n"
    assert (folder / ".git" / "HEAD").is_file()
    assert not (folder / "model" / "stale.safetensors").exists() and not (folder / "old_remote_code.py").exists()
    assert DiTARPipeline.from_pretrained(folder).model is not None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old folder left

    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("important\n")
    (documents / "config.json").write_text("{}\n")
    with pytest.raises(FileExistsError, match="holds other files .*config.json, thesis.txt.*no pipeline folder"):
        pipe.save_pretrained(documents)
    assert sorted(p.name for p in documents.iterdir()) == ["config.json", "thesis.txt"]
    clone = tmp_path / "clone"  # a freshly cloned, empty Hub repository: only hidden files
    (clone / ".git").mkdir(parents=True)
    (clone / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    pipe.save_pretrained(clone)
    assert (clone / ".gitattributes").is_file() and (clone / ".git").is_dir() and (clone / "model_index.json").is_file()


@pytest.mark.parametrize("name", ["feature_mean", "feature_std"])
def test_a_processor_normalising_otherwise_than_the_model_is_refused(name):
    """A processor whose feature_std differed from the model config's was accepted (only the mean was compared): its
    prompts were normalised otherwise than the training data, without a word."""
    components = get_dummy_components()
    fe = components["processor"].feature_extractor
    setattr(fe, name, [2 * value for value in getattr(fe, name)])
    with pytest.raises(ValueError, match=f"processor's {name} differ from the model config's"):
        DiTARPipeline(**components)
