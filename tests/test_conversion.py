"""conversion/: a training checkpoint -> a Hub-ready pipeline folder, and DiTAR initialised from a pretrained causal LM.

The checkpoint comes from a real (tiny, 6-step) run of examples/train.py, so the Accelerate state layout and the EMA
state are exactly what training writes; train.py's own final model (EMA weights) is the reference.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from pipeline_helpers import tone
from preloaded_python import run as run_script
from safetensors.torch import load_file, save_file
from test_training import _config, _tiny_corpus, _train

from modeling_ditar import DiTARForConditionalGeneration, DiTARPipeline, DiTARProcessor, build_pipeline

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("add_candidate_locdit", "checkpoint_to_pipeline", "init_from_lm", "interpolate_weights", "vae_latent_stats")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"conversion_{name}", ROOT / "conversion" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def features(pipe, seed: int = 3) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        "hello world",
        prompt_audio=np.random.default_rng(0).standard_normal(1600).astype(np.float32) * 0.1,
        prompt_text="good day",
        sampling_rate=16000,
        num_inference_steps=2,
        max_new_patches=4,
        output_type="features",
        generator=torch.Generator().manual_seed(seed),
    )
    return out.audios.numpy()


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_has_help(name, capsys):
    module = load_script(name)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------------------------
# training checkpoint -> pipeline
# ----------------------------------------------------------------------------------------------------------------------


# sampling settings of the run other than the library's defaults (2.0, 10, 0.5): a pipeline made from the run must
# sample as its trained model does, not with the defaults
RUN_GENERATION = {"guidance_scale": 1.5, "num_inference_steps": 3, "temperature": 0.3}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("train")
    _tiny_corpus(directory)
    _train(_config(directory, **RUN_GENERATION), directory / "run")
    return directory / "run"


def generation_of(folder: Path) -> dict:
    return json.loads((folder / "generation_config.json").read_text())


def reference_pipeline(run: Path) -> DiTARPipeline:
    """train.py's final model (EMA weights) and processor."""
    model = DiTARForConditionalGeneration.from_pretrained(run / "final" / "model", dtype=torch.float32).eval()
    return build_pipeline(model, DiTARProcessor.from_pretrained(run / "final" / "processor"))


def test_checkpoint_to_pipeline_reproduces_the_trained_model(run, tmp_path):
    convert = load_script("checkpoint_to_pipeline")
    out = tmp_path / "pipe"
    convert.main([str(run), str(out), "--voice-audio", _wav(tmp_path), "--voice-text", "good day"])
    pipe = DiTARPipeline.from_pretrained(out)
    reference = reference_pipeline(run)
    np.testing.assert_array_equal(features(pipe), features(reference))  # the newest checkpoint is the final step
    for name, tensor in reference.model.state_dict().items():
        torch.testing.assert_close(pipe.model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    assert pipe.default_voice is not None and pipe.default_voice[2] == "good day"
    # a Hub-ready folder: remote code, card with valid metadata (placeholders without results)
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == ["pipeline_ditar", "DiTARPipeline"]
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "text-to-speech" and card.data.library_name == "transformers"
    assert card.data.eval_results is None and "_placeholder_" in card.text
    assert "step-6, ema weights" in card.text


def test_raw_weights_and_a_single_checkpoint_folder(run, tmp_path):
    convert = load_script("checkpoint_to_pipeline")
    checkpoint = run / "checkpoints" / "step-3"
    convert.main([str(checkpoint), str(tmp_path / "raw"), "--weights", "raw"])
    pipe = DiTARPipeline.from_pretrained(tmp_path / "raw")
    raw = load_file(str(checkpoint / "model.safetensors"))
    for name, tensor in raw.items():
        torch.testing.assert_close(pipe.model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    # the same step through the run folder and --step, EMA weights: differ from the raw ones
    convert.main([str(run), str(tmp_path / "ema3"), "--step", "3"])
    ema = DiTARPipeline.from_pretrained(tmp_path / "ema3")
    assert not torch.equal(ema.model.stop_head.weight, pipe.model.stop_head.weight)
    with pytest.raises(SystemExit, match=r"no step-4 \(have \[3, 6\]\)"):
        convert.main([str(run), str(tmp_path / "x"), "--step", "4"])


@pytest.mark.parametrize(
    "extra, expected",
    [([], None), (["--matmul-dtype", "auto"], "auto"), (["--card-preset", "embedded-default"], "auto")],
)
def test_the_pipeline_matmul_setting(run, tmp_path, extra, expected):
    """The shipped folder says matmul_dtype "auto"; a default made again from a run must keep saying it."""
    convert = load_script("checkpoint_to_pipeline")
    convert.main([str(run), str(tmp_path / "pipe"), *extra])
    assert json.loads((tmp_path / "pipe" / "model_index.json").read_text())["matmul_dtype"] == expected


def test_results_fill_the_model_index(run, tmp_path):
    results = {
        "meta": {"num_cases": 3, "settings": {"steps": 10, "seed": 0}},
        "rows": [
            {"key": "gt", "name": "ground truth", "cases": 3, "wer": 0.05, "sim_prompt": 0.81},
            {
                "key": "model",
                "name": "DiTAR tiny",
                "cases": 3,
                "wer": 0.25,
                "wer_capped": 0.2,
                "sim_prompt": 0.7123,
                "stop_rate": 1.0,
                "rtf": 0.5,
            },
        ],
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    convert = load_script("checkpoint_to_pipeline")
    convert.main(
        [
            str(run),
            str(tmp_path / "pipe"),
            "--results",
            str(path),
            "--name",
            "DiTAR test",
            "--repo-id",
            "org/ditar-test",
            "--datasets",
            "org/speech",
        ]
    )
    card = ModelCard.load(tmp_path / "pipe" / "README.md")
    metrics = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert metrics == {"wer": 25.0, "speaker_similarity": 0.712}
    assert card.data.datasets == ["org/speech"] and "_placeholder_" not in card.text
    assert 'DiTARPipeline.from_pretrained("org/ditar-test")' in card.text


def test_results_of_another_model_or_with_failed_cases_are_warned_about(run, tmp_path, capsys):
    """--results went into the card unchecked: another model's numbers (here the package's default model's, what an
    evaluation without --pipeline scores) and rows with failed cases passed without a word. The run's own final
    model, which the newest checkpoint's EMA weights reproduce, is the model being converted."""
    convert = load_script("checkpoint_to_pipeline")
    rows = [{"key": "model", "name": "DiTAR tiny", "cases": 3, "failed": 1, "wer": 0.5, "sim_prompt": 0.7}]
    path = tmp_path / "results.json"
    for pipeline, other in ((str(run / "final"), False), (None, True)):
        path.write_text(json.dumps({"meta": {"cwd": str(tmp_path), "settings": {"pipeline": pipeline}}, "rows": rows}))
        convert.main([str(run), str(tmp_path / "pipe"), "--results", str(path), "--force"])
        err = capsys.readouterr().err
        assert ("warning: the results for the card were measured on" in err) == other, err
        assert not other or "the package's default model), whose model weights differ" in err
        assert "warning: 1 of the 3 cases of row 'model' (DiTAR tiny) failed" in err
    assert "| DiTAR tiny | 3 (1 failed) | 50.00 |" in (tmp_path / "pipe" / "README.md").read_text()


def test_output_folder_is_never_silently_replaced(run, tmp_path):
    convert = load_script("checkpoint_to_pipeline")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not empty; pass --force"):
        convert.main([str(run), str(out)])
    assert (out / "keep.txt").read_text() == "mine"
    convert.main([str(run), str(out), "--force"])
    assert not (out / "keep.txt").exists() and (out / "model_index.json").is_file()
    assert not list(tmp_path.glob(".tmp-*"))  # the staging folder was renamed into place


def test_force_never_replaces_the_source_or_a_folder_holding_it(run, tmp_path):
    """With --force, an OUT that was the run (or held it, or held one of its checkpoints) was replaced by the
    pipeline: the run's checkpoints and logs were deleted and the conversion reported success."""
    import shutil

    convert = load_script("checkpoint_to_pipeline")
    copy = tmp_path / "runs" / "run"
    shutil.copytree(run, copy)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    step = next((copy / "checkpoints").iterdir())
    for source, out in ((copy, copy), (copy, tmp_path / "runs"), (step, copy), (step, copy / "checkpoints")):
        with pytest.raises(SystemExit, match="is or holds the source .* which would delete the source"):
            convert.main([str(source), str(out), "--force"])
    for out in (copy / "checkpoints", copy / "final", step):  # part of the run: replacing it deletes that part
        with pytest.raises(SystemExit, match="would delete"):
            convert.main([str(copy), str(out), "--force"])
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    convert.main([str(copy), str(copy / "pipeline")])  # a new folder inside the run: fine
    convert.main([str(copy), str(copy / "pipeline"), "--force"])  # and again over the earlier pipeline
    assert (copy / "pipeline" / "model_index.json").is_file() and (copy / "checkpoints").is_dir()


def test_a_source_of_another_kind_says_what_to_pass(run, tmp_path):
    convert = load_script("checkpoint_to_pipeline")
    convert.main([str(run), str(tmp_path / "pipe")])
    with pytest.raises(SystemExit, match="already a pipeline folder .* pass .*pipe/model --processor .*pipe/processor"):
        convert.main([str(tmp_path / "pipe"), str(tmp_path / "again")])
    with pytest.raises(SystemExit, match="neither a checkpoint .*; its model is in .*final/model"):
        convert.main([str(run / "final"), str(tmp_path / "again")])
    # a run's final/model said only "no processor folder found"; a vocoder run's parts were taken for a model's
    with pytest.raises(SystemExit, match="no processor .*; pass --processor .*final/processor, or give the run .*run "):
        convert.main([str(run / "final" / "model"), str(tmp_path / "again")])
    vocoder_run = tmp_path / "vocoder-run"
    (vocoder_run / "checkpoints" / "step-2").mkdir(parents=True)
    (vocoder_run / "checkpoints" / "step-2" / "model.safetensors").write_bytes(b"")
    (vocoder_run / "train_config.json").write_text(json.dumps({"vocoder": {"dim": 32}, "segment_seconds": 0.4}))
    (vocoder_run / "vocoder").mkdir()
    (vocoder_run / "vocoder" / "config.json").write_text(json.dumps({"_class_name": "VocosVocoder", "dim": 32}))
    for source, what in (
        (vocoder_run, "is a vocoder run"),
        (vocoder_run / "checkpoints" / "step-2", "is a vocoder run"),
        (vocoder_run / "vocoder", "holds a VocosVocoder, not a DiTAR model"),
    ):
        with pytest.raises(SystemExit, match=f"{what}.* VocosVocoder.from_pretrained"):
            convert.main([str(source), str(tmp_path / "again")])
    assert not (tmp_path / "again").exists()


def test_inputs_that_cannot_work_are_named_before_anything_is_built(run, tmp_path):
    """These raised tracebacks (a missing voice file, a results file that is not JSON, a missing --model-config read
    as a Hub id) or a misleading message (a LoRA run's adapter weights reported as 116 missing tensors)."""
    convert = load_script("checkpoint_to_pipeline")
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit, match="--voice-audio .*no-such.wav: no such file"):
        convert.main([str(run), out, "--voice-audio", str(tmp_path / "no-such.wav"), "--voice-text", "hello"])
    (tmp_path / "results.json").write_text("not json")
    with pytest.raises(SystemExit, match="--results .*results.json: not a JSON file"):
        convert.main([str(run), out, "--results", str(tmp_path / "results.json")])
    (tmp_path / "results.json").write_text("[]")  # JSON, but no results.json of evaluate.py: its path said once
    with pytest.raises(SystemExit, match=r"--results [^:]*results.json: not an evaluation results.json"):
        convert.main([str(run), out, "--results", str(tmp_path / "results.json")])
    with pytest.raises(SystemExit, match="--model-config .*missing.json: no such file or folder"):
        convert.main([str(run), out, "--model-config", str(tmp_path / "missing.json")])
    lora_run = tmp_path / "lora-run"
    shutil.copytree(run, lora_run)
    settings = json.loads((lora_run / "train_config.json").read_text())
    (lora_run / "train_config.json").write_text(json.dumps({**settings, "lora": {"rank": 4}}))
    with pytest.raises(SystemExit, match="is a LoRA run: it trained an adapter, not a model.*load_lora_weights"):
        convert.main([str(lora_run), out])
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_that_does_not_fit_names_the_tensor(run, tmp_path):
    convert = load_script("checkpoint_to_pipeline")
    config = json.loads((run / "final" / "model" / "config.json").read_text())
    config["locdit_intermediate_size"] = 48
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        SystemExit, match=r"shape mismatch for locdit\.transformer\.blocks\.0\.ff\.net\.0\.proj\.weight"
    ):
        convert.main([str(run), str(tmp_path / "out"), "--model-config", str(tmp_path / "config.json")])
    assert not (tmp_path / "out").exists()


def test_cli_end_to_end(run, tmp_path):
    out = tmp_path / "cli"
    result = run_script(
        [sys.executable, str(ROOT / "conversion" / "checkpoint_to_pipeline.py"), str(run), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "hf upload" in result.stdout
    np.testing.assert_array_equal(features(DiTARPipeline.from_pretrained(out)), features(reference_pipeline(run)))


def test_the_pipeline_samples_with_the_runs_generation_config(run, tmp_path, capsys):
    """The model was rebuilt from model_config/config.json, which holds no sampling settings: the pipeline sampled with
    the library's defaults, not the run's. train.py now saves the generation config beside the config; runs from
    before take it from final/model, else from train_config.json's model settings; with none a warning says so."""
    convert = load_script("checkpoint_to_pipeline")
    assert {k: generation_of(run / "model_config")[k] for k in RUN_GENERATION} == RUN_GENERATION  # train.py wrote it
    convert.main([str(run), str(tmp_path / "pipe")])
    out = capsys.readouterr().out
    for folder in (tmp_path / "pipe" / "model", tmp_path / "pipe"):  # the root, which transformers reads, too
        assert {k: generation_of(folder)[k] for k in RUN_GENERATION} == RUN_GENERATION
    assert f"generation settings: {run / 'model_config' / 'generation_config.json'}" in out
    assert "decoder: a new Griffin-Lim vocoder with default settings" in out  # the run started from no pipeline

    legacy = tmp_path / "legacy"
    shutil.copytree(run, legacy)
    (legacy / "model_config" / "generation_config.json").unlink()  # a run written before train.py saved it
    convert.main([str(legacy), str(tmp_path / "from-final")])
    assert f"generation settings: {legacy / 'final' / 'model' / 'generation_config.json'}" in capsys.readouterr().out
    shutil.rmtree(legacy / "final")  # ... and interrupted before its final model
    convert.main([str(legacy), str(tmp_path / "from-settings")])
    assert "generation settings: the model settings of" in capsys.readouterr().out
    for folder in ("from-final", "from-settings"):
        generation = generation_of(tmp_path / folder / "model")
        assert {k: generation[k] for k in RUN_GENERATION} == RUN_GENERATION, folder

    single = tmp_path / "lone" / "step-6"  # a checkpoint without its run: nothing says how it sampled
    shutil.copytree(run / "checkpoints" / "step-6", single)
    shutil.copy(run / "model_config" / "config.json", tmp_path / "config.json")
    convert.main(
        [str(single), str(tmp_path / "lone-pipe"), "--model-config", str(tmp_path / "config.json")]
        + ["--processor", str(run / "processor")]
    )
    assert "warning: no generation config found" in capsys.readouterr().err
    assert generation_of(tmp_path / "lone-pipe" / "model")["guidance_scale"] == 2.0


def test_a_run_from_a_pipeline_keeps_its_vocoder_and_sampling_settings(run, tmp_path, capsys):
    """A run that started from a pipeline folder came back with a new default Griffin-Lim vocoder (n_iter 16, not the
    pipeline's 7) and the library's sampling settings: the same weights gave other audio. Now it keeps both, as
    training adjusted them (without a CTC head, one candidate), in runs written before model_config/ held them too."""
    convert = load_script("checkpoint_to_pipeline")
    model = DiTARForConditionalGeneration.from_pretrained(run / "final" / "model").eval()
    processor = DiTARProcessor.from_pretrained(run / "final" / "processor")
    chosen = {"guidance_scale": 1.25, "num_inference_steps": 5, "prompt_spectrum_match": 0.5, "stop_threshold": 0.6}
    for key, value in {**chosen, "num_candidates": 2, "candidate_prune_after_patches": 3}.items():
        setattr(model.generation_config, key, value)
    init = build_pipeline(model, processor, vocoder=processor.build_vocoder(n_iter=7))
    init.save_pretrained(tmp_path / "init")
    config = json.loads((run.parent / "tiny.json").read_text())
    config.update(init_from=str(tmp_path / "init"), max_steps=2, checkpoint_every=2, model={})
    (tmp_path / "ft.json").write_text(json.dumps(config))
    _train(tmp_path / "ft.json", tmp_path / "run")
    # the model has no CTC head to rank candidates: training made it sample one (and its settings the defaults)
    trained = {**chosen, "num_candidates": 1, "candidate_prune_after_patches": None}
    assert {k: generation_of(tmp_path / "run" / "final" / "model")[k] for k in trained} == trained

    legacy = tmp_path / "legacy"
    shutil.copytree(tmp_path / "run", legacy)
    (legacy / "model_config" / "generation_config.json").unlink()
    shutil.rmtree(legacy / "final")  # nothing of the run says how it samples: init_from does, as training adjusts it
    final = tmp_path / "run" / "final"
    for source, out, extra, settings_from in (
        (tmp_path / "run", "pipe", [], "model_config"),
        (legacy, "legacy-pipe", [], "(the run's init_from, as training adjusts it)"),
        (final / "model", "model-pipe", ["--processor", str(final / "processor")], str(final / "model")),
    ):
        convert.main([str(source), str(tmp_path / out), *extra])
        printed = capsys.readouterr().out
        assert f"decoder: the GriffinLimVocoder of {tmp_path / 'init'}" in printed, out
        assert settings_from in next(
            line for line in printed.splitlines() if line.startswith("generation settings: ")
        ), out
        pipe = DiTARPipeline.from_pretrained(tmp_path / out)
        assert pipe.vocoder.config.n_iter == 7, out
        assert json.loads((tmp_path / out / "vocoder" / "config.json").read_text()) == json.loads(
            (tmp_path / "init" / "vocoder" / "config.json").read_text()
        ), out
        assert {k: generation_of(tmp_path / out / "model")[k] for k in trained} == trained, out


def test_a_model_folder_with_missing_or_extra_tensors_is_refused(run, tmp_path):
    """from_pretrained filled missing tensors randomly (and dropped unknown ones) with a log line, and the conversion
    wrote a pipeline with an untrained stop head and exited 0."""
    convert = load_script("checkpoint_to_pipeline")
    processor = ["--processor", str(run / "final" / "processor")]
    weights = load_file(str(run / "final" / "model" / "model.safetensors"))
    for name, changed, message in (
        (
            "missing",
            {k: v for k, v in weights.items() if not k.startswith("stop_head.")},
            "missing in .*: stop_head.bias",
        ),
        ("extra", {**weights, "extra_head.weight": torch.zeros(2, 2)}, "not in the model: extra_head.weight"),
    ):
        folder = tmp_path / name
        shutil.copytree(run / "final" / "model", folder)
        save_file(changed, str(folder / "model.safetensors"), metadata={"format": "pt"})
        with pytest.raises(SystemExit, match=rf"^error: .*{name} does not fit its config.json .*\n.*{message}"):
            convert.main([str(folder), str(tmp_path / f"{name}-pipe"), *processor])
        assert not (tmp_path / f"{name}-pipe").exists()


def _wav(tmp_path: Path) -> str:
    from pipeline_helpers import write_wav

    return write_wav(tmp_path / "voice.wav", tone(0.2, sr=16000), sr=16000)


# ----------------------------------------------------------------------------------------------------------------------
# pretrained causal LM -> DiTAR
# ----------------------------------------------------------------------------------------------------------------------

LM_CONFIGS = {
    "qwen2": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=320,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    ),
    "llama": dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=320,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    ),
}


def save_tiny_lm(folder: Path, model_type: str) -> Path:
    """A random causal LM with a small byte-level BPE tokenizer, saved like a Hub checkpoint."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(["hello world, a small test of speech.", "the quick brown fox jumps."] * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(1)
    config = AutoConfig.for_model(model_type, **LM_CONFIGS[model_type])
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("model_type", ["qwen2", "llama"])
def test_init_from_lm(tmp_path, model_type):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm_dir = save_tiny_lm(tmp_path / "lm", model_type)
    speech = {
        "patch_size": 2,
        "num_history_patches": 1,
        "encoder_hidden_size": 32,
        "encoder_num_layers": 1,
        "encoder_num_heads": 4,
        "encoder_intermediate_size": 64,
        "locdit_hidden_size": 32,
        "locdit_num_layers": 1,
        "locdit_num_heads": 4,
        "locdit_intermediate_size": 64,
    }
    (tmp_path / "speech.json").write_text(json.dumps(speech))
    from pipeline_helpers import get_dummy_feature_extractor

    get_dummy_feature_extractor().save_pretrained(tmp_path / "fe")
    load_script("init_from_lm").main(
        [
            str(lm_dir),
            str(tmp_path / "out"),
            "--speech-config",
            str(tmp_path / "speech.json"),
            "--feature-extractor",
            str(tmp_path / "fe"),
        ]
    )

    pipe = DiTARPipeline.from_pretrained(tmp_path / "out")
    lm = AutoModelForCausalLM.from_pretrained(lm_dir, dtype=torch.float32)
    model = pipe.model
    assert model.config.text_config.model_type == model_type and model.config.patch_size == 2
    backbone = model.language_model.state_dict()
    lm_backbone = lm.model.state_dict()
    assert backbone.keys() == lm_backbone.keys()
    for name, tensor in lm_backbone.items():  # backbone = the LM's weights, text embeddings included
        torch.testing.assert_close(backbone[name], tensor, rtol=0, atol=0, msg=name)
    # the speech parts are freshly initialised (LocDiT's output projection at zero, DiT practice)
    assert torch.count_nonzero(model.locdit.out_proj.weight) == 0
    special = model.aggregation_encoder.special_token
    assert 0.005 < float(special.detach().std()) < 0.05
    # the LM's own tokenizer, used as it is
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    assert pipe.processor.text_mode == "tokenizer"
    assert pipe.processor.tokenizer.get_vocab() == tokenizer.get_vocab()
    assert pipe.processor.encode_text("hello  world") == tokenizer.encode("hello world", add_special_tokens=False)
    batch = pipe.processor("the quick fox", prompt_text="hello world", prompt_audio=tone(0.05), sampling_rate=8000)
    space = tokenizer.encode(" ", add_special_tokens=False)
    assert batch["input_ids"][0].tolist() == (
        tokenizer.encode("hello world", add_special_tokens=False)
        + space
        + tokenizer.encode("the quick fox", add_special_tokens=False)
    )
    # it trains and generates
    loss = model(input_ids=batch["input_ids"], speech_features=torch.randn(1, 12, 8)).loss
    assert torch.isfinite(loss)
    pipe.set_progress_bar_config(disable=True)
    audio = pipe(
        "the quick fox",
        prompt_audio=tone(0.05),
        prompt_text="hello world",
        sampling_rate=8000,
        max_new_patches=2,
        num_inference_steps=2,
    ).audios
    assert np.isfinite(audio).all()
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "untrained" in card.text


def test_init_from_lm_checks_shapes_and_reads_bin_safely(tmp_path):
    lm_dir = save_tiny_lm(tmp_path / "lm", "qwen2")
    init = load_script("init_from_lm")
    # a pytorch_model.bin is read with torch.load(weights_only=True) when no safetensors exist
    state = load_file(str(lm_dir / "model.safetensors"))
    torch.save(state, lm_dir / "pytorch_model.bin")
    (lm_dir / "model.safetensors").unlink()
    init.main([str(lm_dir), str(tmp_path / "from_bin")])
    assert (tmp_path / "from_bin" / "model_index.json").is_file()
    # a tensor of the wrong shape is named
    state["model.layers.1.mlp.up_proj.weight"] = torch.zeros(48, 32)
    save_file(state, str(lm_dir / "model.safetensors"))
    with pytest.raises(
        SystemExit,
        match=r"shape mismatch for layers\.1\.mlp\.up_proj\.weight: .* \(48, 32\), the "
        r"model expects \(64, 32\)",
    ):
        init.main([str(lm_dir), str(tmp_path / "bad")])
    with pytest.raises(SystemExit, match="not empty; pass --force"):
        init.main([str(lm_dir), str(tmp_path / "from_bin")])


def test_a_folder_of_another_kind_is_one_error_line(run, tmp_path):
    """A causal LM given to checkpoint_to_pipeline.py and a vocoder folder given to init_from_lm.py raised
    transformers' tracebacks; each is now one `error:` line that names the folder and what to run instead."""
    lm_dir = save_tiny_lm(tmp_path / "lm", "qwen2")
    with pytest.raises(SystemExit, match=r"^error: .*lm holds a qwen2 model .*not a DiTAR model.*init_from_lm.py"):
        load_script("checkpoint_to_pipeline").main(
            [str(lm_dir), str(tmp_path / "out"), "--processor", str(run / "final" / "processor")]
        )
    from pipeline_helpers import get_dummy_pipeline

    get_dummy_pipeline(seed=0).save_pretrained(tmp_path / "pipe")
    with pytest.raises(SystemExit, match=r"^error: .*vocoder holds a GriffinLimVocoder, not a causal LM"):
        load_script("init_from_lm").main([str(tmp_path / "pipe" / "vocoder"), str(tmp_path / "out")])
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"hidden_size": 8}))  # no model_type
    with pytest.raises(SystemExit, match=r"^error: .*odd: not a transformers model folder"):
        load_script("init_from_lm").main([str(tmp_path / "odd"), str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_init_from_lm_then_fine_tune_with_train_py(tmp_path):
    """The initialised folder is what examples/train.py --init-from expects (model/ + processor/ with the LM
    tokenizer)."""
    _tiny_corpus(tmp_path)
    config = json.loads(_config(tmp_path).read_text())
    save_tiny_lm(tmp_path / "lm", "qwen2")
    (tmp_path / "speech.json").write_text(json.dumps({k: v for k, v in config["model"].items() if k != "text_config"}))
    load_script("init_from_lm").main(
        [
            str(tmp_path / "lm"),
            str(tmp_path / "init"),
            "--speech-config",
            str(tmp_path / "speech.json"),
            "--feature-extractor",
            str(tmp_path / "corpus" / "feature_extractor"),
        ]
    )
    config.update(init_from=str(tmp_path / "init"), max_steps=2)
    del config["model"]["text_config"]  # the backbone is the LM's (a different one would be refused)
    (tmp_path / "ft.json").write_text(json.dumps(config))
    result = _train(tmp_path / "ft.json", tmp_path / "run")
    assert "step 2 " in result.stdout
    tuned = DiTARForConditionalGeneration.from_pretrained(tmp_path / "run" / "final" / "model")
    assert tuned.config.text_config.vocab_size == LM_CONFIGS["qwen2"]["vocab_size"]


def test_a_saved_model_folder_becomes_a_pipeline(run, tmp_path):
    """train.py's final/model (or a GPU run's exported model) is a save_pretrained folder: convert it as is."""
    convert = load_script("checkpoint_to_pipeline")
    out = tmp_path / "from-model"
    convert.main(
        [str(run / "final" / "model"), str(out), "--processor", str(run / "final" / "processor"), "--dtype", "float16"]
    )
    pipe = DiTARPipeline.from_pretrained(out, dtype=torch.float16)  # as stored; by default it computes in float32
    reference = reference_pipeline(run)
    for name, tensor in reference.model.state_dict().items():
        assert pipe.model.state_dict()[name].dtype == torch.float16, name
        torch.testing.assert_close(
            pipe.model.state_dict()[name].float(), tensor.half().float(), rtol=0, atol=0, msg=name
        )
    assert "save_pretrained weights" in (out / "README.md").read_text()
    with pytest.raises(convert.ConversionError, match="model folder"):
        convert.main(
            [
                str(run / "final" / "model"),
                str(tmp_path / "bad"),
                "--weights",
                "raw",
                "--processor",
                str(run / "final" / "processor"),
            ]
        )


# ----------------------------------------------------------------------------------------------------------------------
# interpolation of a fine-tuned model with its base (WiSE-FT)
# ----------------------------------------------------------------------------------------------------------------------


def test_interpolate_weights_mixes_two_pipelines(tmp_path):
    """alpha 0 gives the base back, alpha 1 the fine-tuned weights, 0.3 the float32 mix stored in the base's dtype;
    the output is the base folder with new weights, and it loads and generates."""
    from pipeline_helpers import get_dummy_pipeline

    interpolate = load_script("interpolate_weights")
    base_pipe, tuned_pipe = get_dummy_pipeline(seed=0), get_dummy_pipeline(seed=1)
    base_pipe.model.to(torch.float16)  # the embedded default is stored in float16
    base_pipe.save_pretrained(tmp_path / "base")
    tuned_pipe.model.save_pretrained(tmp_path / "tuned")
    base = load_file(str(tmp_path / "base" / "model" / "model.safetensors"))
    tuned = load_file(str(tmp_path / "tuned" / "model.safetensors"))

    for alpha in (0.0, 0.3, 1.0):
        out = tmp_path / f"mixed-{alpha}"
        interpolate.main([str(tmp_path / "base"), str(tmp_path / "tuned"), str(out), "--alpha", str(alpha)])
        mixed = load_file(str(out / "model" / "model.safetensors"))
        assert mixed.keys() == base.keys()
        for name, b in base.items():
            expected = ((1 - alpha) * b.float() + alpha * tuned[name].float()).to(b.dtype)
            assert mixed[name].dtype == b.dtype and torch.equal(mixed[name], expected), name
    assert all(
        torch.equal(load_file(str(tmp_path / "mixed-0.0/model/model.safetensors"))[n], t) for n, t in base.items()
    )
    # everything but the weights is the base folder's
    for path in (tmp_path / "base").rglob("*"):
        if path.is_file() and path.suffix != ".safetensors":
            assert (tmp_path / "mixed-0.3" / path.relative_to(tmp_path / "base")).read_bytes() == path.read_bytes()
    # the root, which transformers reads, holds the mixed weights too (it held the base's)
    root = load_file(str(tmp_path / "mixed-0.3" / "model.safetensors"))
    assert all(
        torch.equal(root[n], t) for n, t in load_file(str(tmp_path / "mixed-0.3/model/model.safetensors")).items()
    )
    pipe = DiTARPipeline.from_pretrained(tmp_path / "mixed-0.3")
    assert pipe.model.dtype == torch.float32  # a float16 folder computes in float32
    assert np.isfinite(features(pipe)).all()


def test_interpolate_weights_leaves_out_a_candidate_locdit_the_finetuned_model_lacks(tmp_path):
    """A base with a candidate LocDiT (a student of its LocDiT) mixed with a trained model without one (training leaves
    it out) gives a folder without it that loads, and whose candidates LocDiT samples at its own steps; two models that
    both have one mix theirs like any weight."""
    from pipeline_helpers import get_dummy_pipeline

    interpolate = load_script("interpolate_weights")
    base_pipe = get_dummy_pipeline(seed=0, candidate_locdit=True)
    base_pipe.model.generation_config.candidate_num_inference_steps = 1
    base_pipe.save_pretrained(tmp_path / "base")
    get_dummy_pipeline(seed=1).model.save_pretrained(tmp_path / "tuned")
    interpolate.main([str(tmp_path / "base"), str(tmp_path / "tuned"), str(tmp_path / "out"), "--alpha", "0.5"])
    mixed = load_file(str(tmp_path / "out/model/model.safetensors"))
    assert mixed and not any(name.startswith("candidate_locdit.") for name in mixed)
    assert json.loads((tmp_path / "out/model/config.json").read_text())["candidate_locdit"] is False
    generation = json.loads((tmp_path / "out/model/generation_config.json").read_text())
    assert generation["candidate_num_inference_steps"] is None and generation["num_candidates"] == (
        base_pipe.model.generation_config.num_candidates
    )
    pipe = DiTARPipeline.from_pretrained(tmp_path / "out")
    assert (
        pipe.model.candidate_locdit is None and pipe.model.generation_settings().candidate_num_inference_steps is None
    )
    assert np.isfinite(features(pipe)).all()

    interpolate.main([str(tmp_path / "base"), str(tmp_path / "base"), str(tmp_path / "same"), "--alpha", "0.5"])
    assert any(
        name.startswith("candidate_locdit.") for name in load_file(str(tmp_path / "same/model/model.safetensors"))
    )


def test_interpolate_weights_refuses_bad_inputs(tmp_path):
    from pipeline_helpers import get_dummy_pipeline

    interpolate = load_script("interpolate_weights")
    get_dummy_pipeline(seed=0).save_pretrained(tmp_path / "base")
    tuned = load_file(str(tmp_path / "base" / "model" / "model.safetensors"))
    name = next(iter(tuned))
    tuned[name] = torch.zeros(3, 5)
    del tuned[sorted(tuned)[-1]]
    save_file(tuned, str(tmp_path / "tuned.safetensors"))
    with pytest.raises(interpolate.ConversionError, match="2 problem") as error:
        interpolate.main(
            [str(tmp_path / "base"), str(tmp_path / "tuned.safetensors"), str(tmp_path / "o"), "--alpha", "0.5"]
        )
    assert f"shape mismatch for {name}" in str(error.value) and "missing in" in str(error.value)
    with pytest.raises(interpolate.ConversionError, match=r"--alpha must lie in \[0, 1\]"):
        interpolate.main([str(tmp_path / "base"), str(tmp_path / "base"), str(tmp_path / "o"), "--alpha", "1.5"])
    with pytest.raises(interpolate.ConversionError, match="one of the inputs"):
        interpolate.main([str(tmp_path / "base"), str(tmp_path / "base"), str(tmp_path / "base"), "--alpha", "0.5"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(interpolate.ConversionError, match="not empty; pass --force"):
        interpolate.main([str(tmp_path / "base"), str(tmp_path / "base"), str(tmp_path / "full"), "--alpha", "0.5"])
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    assert not (tmp_path / "o").exists()


def test_interpolate_weights_gives_a_module_its_own_alpha(tmp_path):
    """--module-alpha PREFIX=A mixes the tensors under PREFIX at A and the rest at --alpha; the longest prefix wins;
    a prefix that matches nothing or a malformed value is refused before anything is written."""
    from pipeline_helpers import get_dummy_pipeline

    interpolate = load_script("interpolate_weights")
    get_dummy_pipeline(seed=0).save_pretrained(tmp_path / "base")
    get_dummy_pipeline(seed=1).model.save_pretrained(tmp_path / "tuned")
    base = load_file(str(tmp_path / "base" / "model" / "model.safetensors"))
    tuned = load_file(str(tmp_path / "tuned" / "model.safetensors"))
    first_locdit_block = next(n for n in base if n.startswith("locdit.") and ".blocks.0." in n)
    block_prefix = first_locdit_block.split(".blocks.0.")[0] + ".blocks.0"

    out = tmp_path / "mixed"
    interpolate.main(
        [str(tmp_path / "base"), str(tmp_path / "tuned"), str(out), "--alpha", "0.3"]
        + ["--module-alpha", "locdit=1.0", "--module-alpha", f"{block_prefix}=0.6"]
    )
    mixed = load_file(str(out / "model" / "model.safetensors"))
    seen = set()
    for name, b in base.items():
        if name.startswith(block_prefix + "."):
            alpha = 0.6
        elif name.startswith("locdit."):
            alpha = 1.0
        else:
            alpha = 0.3
        seen.add(alpha)
        expected = ((1 - alpha) * b.float() + alpha * tuned[name].float()).to(b.dtype)
        assert torch.equal(mixed[name], expected), name
    assert seen == {0.3, 0.6, 1.0}
    assert DiTARPipeline.from_pretrained(out).model.locdit is not None

    for bad, message in (
        ("locdt=0.5", r"'locdt' match no tensor; the model's top-level modules are .*locdit"),
        ("locdit", "takes PREFIX=ALPHA"),
        ("locdit=high", "takes PREFIX=ALPHA"),
        ("locdit=1.5", r"alpha must lie in \[0, 1\]"),
    ):
        with pytest.raises(interpolate.ConversionError, match=message):
            interpolate.main(
                [str(tmp_path / "base"), str(tmp_path / "tuned"), str(tmp_path / "o"), "--alpha", "0.3"]
                + ["--module-alpha", bad]
            )
    assert not (tmp_path / "o").exists()


def test_interpolate_weights_settles_settings_that_differ_without_changing_shapes(tmp_path):
    """Only shapes were compared: a FINETUNED trained with aligned speech positions (or another sampling default) was
    mixed into BASE's config, so even alpha 1 ran FINETUNED's weights with BASE's positions. Now alpha 1 takes
    FINETUNED's settings, alpha 0 keeps BASE's, and a true mix must choose with --config-from; settings that only act
    in training never stop it."""
    from pipeline_helpers import get_dummy_pipeline

    interpolate = load_script("interpolate_weights")
    get_dummy_pipeline(seed=0).save_pretrained(tmp_path / "base")
    tuned = get_dummy_pipeline(seed=1, speech_positions="aligned", text_tokens_per_frame=0.37, history_dropout_prob=0.5)
    tuned.model.generation_config.guidance_scale = 1.5
    tuned.model.save_pretrained(tmp_path / "tuned")
    base, out = str(tmp_path / "base"), tmp_path / "out"

    def settings(folder: Path) -> tuple:
        config, generation = json.loads((folder / "config.json").read_text()), generation_of(folder)
        return config["speech_positions"], config["text_tokens_per_frame"], generation["guidance_scale"]

    with pytest.raises(
        interpolate.ConversionError,
        match=r"^error: BASE and FINETUNED differ in 3 setting\(s\) .*: speech_positions: 'sequential' in BASE, "
        r"'aligned' in FINETUNED; text_tokens_per_frame: 0.25 in BASE, 0.37 in FINETUNED; guidance_scale \(generation "
        r"config\): 2.0 in BASE, 1.5 in FINETUNED\. .*--config-from finetuned .*--config-from base",
    ) as refused:
        interpolate.main([base, str(tmp_path / "tuned"), str(out), "--alpha", "0.5"])
    assert "history_dropout_prob" not in str(refused.value) and not out.exists()  # training only: no reason to stop
    for extra, expected in (
        (["--alpha", "1.0"], ("aligned", 0.37, 1.5)),
        (["--alpha", "0.0"], ("sequential", 0.25, 2.0)),
        (["--alpha", "0.5", "--config-from", "finetuned"], ("aligned", 0.37, 1.5)),
        (["--alpha", "0.5", "--config-from", "base"], ("sequential", 0.25, 2.0)),
        (["--alpha", "1.0", "--module-alpha", "locdit=0.5", "--config-from", "finetuned"], ("aligned", 0.37, 1.5)),
    ):
        interpolate.main([base, str(tmp_path / "tuned"), str(out), "--force", *extra])
        assert settings(out / "model") == expected, extra
        assert settings(out) == expected, extra  # the root, which transformers reads
        history = json.loads((out / "model" / "config.json").read_text())["history_dropout_prob"]
        assert history == (0.5 if expected[0] == "aligned" else 0.0), extra
        if "locdit=0.5" not in extra:
            assert DiTARPipeline.from_pretrained(out).model.config.speech_positions == expected[0]
    with pytest.raises(interpolate.ConversionError, match="--config-from"):  # a module mixed at 0.5 is a mix too
        interpolate.main(
            [base, str(tmp_path / "tuned"), str(tmp_path / "o"), "--alpha", "1.0"] + ["--module-alpha", "locdit=0.5"]
        )
    # a training-only difference alone mixes, with BASE's value
    get_dummy_pipeline(seed=1, history_dropout_prob=0.5).model.save_pretrained(tmp_path / "tuned-dropout")
    interpolate.main([base, str(tmp_path / "tuned-dropout"), str(tmp_path / "mixed"), "--alpha", "0.5"])
    assert json.loads((tmp_path / "mixed" / "model" / "config.json").read_text())["history_dropout_prob"] == 0.0


def _card_with_results(folder: Path) -> None:
    from modeling_ditar.hub_utils import render_model_card

    rows = [{"key": "model", "name": "base", "cases": 3, "wer": 0.25, "sim_prompt": 0.7}]
    card = render_model_card(model_name="The base", results={"meta": {}, "rows": rows}, license="cc-by-4.0")
    card.save(str(folder / "README.md"))


def test_a_blend_gets_its_own_card_and_is_never_written_inside_an_input(tmp_path):
    """OUT copied BASE's README.md, model-index metrics and parameter count included, which describe BASE's weights;
    and an OUT inside BASE copied the staging folder into itself, growing with each --force run."""
    from pipeline_helpers import get_dummy_pipeline

    interpolate = load_script("interpolate_weights")
    get_dummy_pipeline(seed=0).save_pretrained(tmp_path / "base")
    _card_with_results(tmp_path / "base")
    get_dummy_pipeline(seed=1).model.save_pretrained(tmp_path / "tuned")
    interpolate.main([str(tmp_path / "base"), str(tmp_path / "tuned"), str(tmp_path / "out"), "--alpha", "0.3"])
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.eval_results is None and "| base |" not in card.text and "_placeholder_" in card.text
    assert "alpha 0.3" in card.text and str(tmp_path / "tuned") in card.text and card.data.license == "cc-by-4.0"
    for path in (tmp_path / "base").rglob("*"):  # everything else is still the base's
        if path.is_file() and path.suffix != ".safetensors" and path.name not in ("README.md", "config.json"):
            assert (tmp_path / "out" / path.relative_to(tmp_path / "base")).read_bytes() == path.read_bytes(), path

    before = sorted((tmp_path / "base").rglob("*"))
    for inside in (tmp_path / "base" / "mixed", tmp_path / "tuned" / "mixed"):
        with pytest.raises(
            interpolate.ConversionError, match="^error: .*lies inside the input .*choose a folder outside"
        ):
            interpolate.main([str(tmp_path / "base"), str(tmp_path / "tuned"), str(inside), "--alpha", "0.3"])
        assert not inside.exists()
    assert sorted((tmp_path / "base").rglob("*")) == before


# ----------------------------------------------------------------------------------------------------------------------
# a distilled student as the candidate LocDiT
# ----------------------------------------------------------------------------------------------------------------------


def _student_folder(tmp_path, base_pipe, shift: float = 0.01, **generation) -> Path:
    """A student of `base_pipe` as distillation exports it: the base with another LocDiT and its own step count."""
    from pipeline_helpers import get_dummy_pipeline

    student = get_dummy_pipeline(seed=1, ctc_loss_weight=1.0)
    student.model.load_state_dict(base_pipe.model.state_dict())
    with torch.no_grad():
        for parameter in student.model.locdit.parameters():
            parameter.add_(shift)
    for key, value in {"num_inference_steps": 1, **generation}.items():
        setattr(student.model.generation_config, key, value)
    student.save_pretrained(tmp_path / "student")
    return tmp_path / "student"


def test_add_candidate_locdit_puts_the_students_locdit_beside_the_base(tmp_path):
    from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline

    convert = load_script("add_candidate_locdit")
    base_pipe = get_dummy_pipeline(seed=0, ctc_loss_weight=1.0)
    base_pipe.model.to(torch.float16)  # the embedded default is stored in float16
    base_pipe.save_pretrained(tmp_path / "base")
    student = _student_folder(tmp_path, get_dummy_pipeline(seed=0, ctc_loss_weight=1.0))
    convert.main([str(tmp_path / "base"), str(student), str(tmp_path / "out")])

    base = load_file(str(tmp_path / "base/model/model.safetensors"))
    out = load_file(str(tmp_path / "out/model/model.safetensors"))
    taught = load_file(str(student / "model/model.safetensors"))
    assert set(out) == set(base) | {"candidate_" + n for n in base if n.startswith("locdit.")}
    for name, tensor in base.items():
        assert torch.equal(out[name], tensor), name
        if name.startswith("locdit."):
            assert out["candidate_" + name].dtype == torch.float16
            assert torch.equal(out["candidate_" + name], taught[name].to(torch.float16)), name
    assert json.loads((tmp_path / "out/model/config.json").read_text())["candidate_locdit"] is True
    generation = json.loads((tmp_path / "out/model/generation_config.json").read_text())
    assert generation["candidate_num_inference_steps"] == 1
    # everything else is the base folder's, but for the root's transformers files, which follow model/
    root_files = {"config.json", "generation_config.json", "model.safetensors"}
    for path in (tmp_path / "base").rglob("*"):
        if (
            path.is_file()
            and path.parent.name != "model"
            and path.relative_to(tmp_path / "base").name not in root_files
        ):
            assert (tmp_path / "out" / path.relative_to(tmp_path / "base")).read_bytes() == path.read_bytes()
    for name in ("generation_config.json", "model.safetensors"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "out" / "model" / name).read_bytes()
    assert json.loads((tmp_path / "out/config.json").read_text())["candidate_locdit"] is True
    from transformers import AutoModelForTextToWaveform

    tts_model = AutoModelForTextToWaveform.from_pretrained(tmp_path / "out")  # AutoModel had no candidate LocDiT
    assert tts_model.candidate_locdit is not None and tts_model.generation_config.candidate_num_inference_steps == 1

    pipe = DiTARPipeline.from_pretrained(tmp_path / "out")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.model.candidate_locdit is not None
    out_audio = pipe(**get_dummy_inputs(max_new_patches=4), num_candidates=2, candidate_prune_after_patches=2)
    assert np.isfinite(out_audio.audios).all()


def test_add_candidate_locdit_refuses_a_student_that_does_not_fit(tmp_path):
    from pipeline_helpers import get_dummy_pipeline

    convert = load_script("add_candidate_locdit")
    base_pipe = get_dummy_pipeline(seed=0, ctc_loss_weight=1.0)
    base_pipe.save_pretrained(tmp_path / "base")
    folded = _student_folder(tmp_path, base_pipe, guidance_scale=1.0, distilled_guidance_scale=2.0)
    with pytest.raises(convert.ConversionError, match="folded in"):
        convert.main([str(tmp_path / "base"), str(folded), str(tmp_path / "o")])
    other_scale = _student_folder(tmp_path, base_pipe, guidance_scale=3.0)
    with pytest.raises(convert.ConversionError, match="guidance_scale 3.0 and the base with 2.0"):
        convert.main([str(tmp_path / "base"), str(other_scale), str(tmp_path / "o")])
    get_dummy_pipeline(seed=0, ctc_loss_weight=1.0, locdit_hidden_size=16).save_pretrained(tmp_path / "narrow")
    with pytest.raises(convert.ConversionError, match="locdit_hidden_size"):
        convert.main([str(tmp_path / "base"), str(tmp_path / "narrow"), str(tmp_path / "o")])
    student = _student_folder(tmp_path, base_pipe)
    convert.main([str(tmp_path / "base"), str(student), str(tmp_path / "once")])
    with pytest.raises(convert.ConversionError, match="already has a candidate LocDiT; pass --replace"):
        convert.main([str(tmp_path / "once"), str(student), str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
    # --replace: another student takes the first one's place, and nothing else changes
    other = _student_folder(tmp_path / "second", base_pipe, shift=0.02)
    convert.main([str(tmp_path / "once"), str(other), str(tmp_path / "twice"), "--replace"])
    once = load_file(str(tmp_path / "once/model/model.safetensors"))
    twice = load_file(str(tmp_path / "twice/model/model.safetensors"))
    taught = load_file(str(other / "model/model.safetensors"))
    assert once.keys() == twice.keys() and not torch.equal(
        once["candidate_locdit.in_proj.weight"], twice["candidate_locdit.in_proj.weight"]
    )
    for name, tensor in twice.items():
        expected = taught[name[len("candidate_") :]] if name.startswith("candidate_locdit.") else once[name]
        assert torch.equal(tensor, expected.to(tensor.dtype)), name


def test_add_candidate_locdit_lists_the_new_weights_in_a_neural_vocoders_root_index(tmp_path):
    """With a neural vocoder the root names model/'s weights in an index: the student's tensors must be in it, or
    transformers' entry points load the model without them."""
    from pipeline_helpers import get_dummy_pipeline
    from test_vocoder_vocos import tiny_vocoder
    from transformers import AutoModelForTextToWaveform

    convert = load_script("add_candidate_locdit")
    base_pipe = get_dummy_pipeline(seed=0, ctc_loss_weight=1.0)
    DiTARPipeline(**{**base_pipe.components, "vocoder": tiny_vocoder(seed=3)}).save_pretrained(tmp_path / "base")
    convert.main([str(tmp_path / "base"), str(_student_folder(tmp_path, base_pipe)), str(tmp_path / "out")])
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())["weight_map"]
    student_entries = {v for k, v in index.items() if k.startswith("candidate_locdit.")}
    assert student_entries == {"model/model.safetensors"}
    assert index["vocoder.head.out.weight"] == "model-vocoder.safetensors"
    model, info = AutoModelForTextToWaveform.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and model.candidate_locdit is not None
    student = load_file(str(tmp_path / "student" / "model" / "model.safetensors"))
    for name, tensor in model.candidate_locdit.state_dict().items():
        torch.testing.assert_close(tensor, student[f"locdit.{name}"].float())


def test_add_candidate_locdit_takes_only_a_student_of_the_base(tmp_path, capsys):
    """Any folder with a LocDiT of the right shape was installed: the pipeline BASE was blended from (its main LocDiT
    became the candidate, at its step count), or BASE itself. A student shares every weight outside LocDiT with
    BASE; STUDENT's own candidate LocDiT, its teacher's, is not the student and is said to be unused."""
    from pipeline_helpers import get_dummy_pipeline

    convert = load_script("add_candidate_locdit")
    base_pipe = get_dummy_pipeline(seed=0, ctc_loss_weight=1.0)
    base_pipe.save_pretrained(tmp_path / "base")
    base = str(tmp_path / "base")
    other = get_dummy_pipeline(seed=2, ctc_loss_weight=1.0)
    other.model.generation_config.num_inference_steps = 1
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(
        convert.ConversionError,
        match=r"^error: .*other is not a student of .*base: \d+ of its \d+ weights outside "
        r"LocDiT differ .*\(e\.g\. aggregation_encoder\..*--allow-other-base",
    ):
        convert.main([base, str(tmp_path / "other"), str(tmp_path / "o")])
    convert.main([base, str(tmp_path / "other"), str(tmp_path / "forced"), "--allow-other-base"])  # knowingly
    assert (tmp_path / "forced" / "model_index.json").is_file()
    with pytest.raises(convert.ConversionError, match="^error: .*base is BASE itself"):
        convert.main([base, base, str(tmp_path / "o")])
    shutil.copytree(tmp_path / "base", tmp_path / "copy")
    with pytest.raises(
        convert.ConversionError, match="^error: .*copy's LocDiT is .*base's own LocDiT, not a distilled"
    ):
        convert.main([base, str(tmp_path / "copy"), str(tmp_path / "o")])
    with pytest.raises(convert.ConversionError, match="lies inside the input"):
        convert.main([base, str(_student_folder(tmp_path, base_pipe)), str(tmp_path / "base" / "o")])
    assert not (tmp_path / "o").exists() and not (tmp_path / "base" / "o").exists()

    # a student of a base that has a candidate LocDiT carries that one along: its `locdit` is the student
    _card_with_results(tmp_path / "base")
    convert.main([base, str(tmp_path / "student"), str(tmp_path / "once")])
    second = tmp_path / "second"  # as distill_locdit.py exports a student of "once": its LocDiT trained in place
    teacher = DiTARPipeline.from_pretrained(tmp_path / "once")
    with torch.no_grad():
        for parameter in teacher.model.locdit.parameters():
            parameter.add_(0.02)
    teacher.model.generation_config.num_inference_steps = 1
    teacher.save_pretrained(second)
    capsys.readouterr()
    convert.main([str(tmp_path / "once"), str(second), str(tmp_path / "twice"), "--replace"])
    assert "candidate LocDiT, its teacher's, is not used" in capsys.readouterr().out
    twice, taught = (
        load_file(str(tmp_path / "twice/model/model.safetensors")),
        load_file(str(second / "model/model.safetensors")),
    )
    assert not torch.equal(taught["locdit.in_proj.weight"], taught["candidate_locdit.in_proj.weight"])
    assert torch.equal(twice["candidate_locdit.in_proj.weight"], taught["locdit.in_proj.weight"])
    # its card says what it is, not what the base measured
    card = ModelCard.load(tmp_path / "once" / "README.md")
    assert card.data.eval_results is None and "| base |" not in card.text and "candidate LocDiT" in card.text
    assert card.data.license == "cc-by-4.0"
