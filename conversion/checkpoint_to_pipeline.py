#!/usr/bin/env python
"""Turn a training checkpoint of examples/train.py into a Hub-ready DiTAR pipeline folder with its model card.

    python conversion/checkpoint_to_pipeline.py runs/default out/ditar-default \\
        --voice-audio voice.wav --voice-text "What is said in voice.wav." --results eval/default/results.json
    hf upload org/ditar-default out/ditar-default .          # the one command that publishes it (a new repo)

SOURCE is a run folder (the newest `checkpoints/step-N`, or --step N), one Accelerate checkpoint folder
(`save_state`: model.safetensors, the EMA state custom_checkpoint_*.pkl, ...), or a model folder written by
`save_pretrained` (config.json + weights, e.g. a run's final/model, which already holds the EMA weights; give its
processor with --processor). The model config is rebuilt from the
run's train_config.json and processor/ exactly as train.py builds it (or given with --model-config); weights are the
EMA weights (default, what train.py's final model holds) or the raw weights (--weights raw). Every tensor is checked
against the model and a mismatch names the tensor. Only safetensors files and torch.load(weights_only=True) are read.

The generation config (the sampling defaults: steps, guidance, candidates, temperature, stop threshold, ...) is the
one training used: the run's model_config/generation_config.json (train.py writes it beside the config), else, for
runs written before that, the run's final/model's, else the init_from model's (adjusted as train.py adjusts it), else
the settings of train_config.json's model section; the output names where it came from, and warns when none was
found and the library defaults are used. A model folder brings its own. A run that started from a pipeline folder
(init_from) keeps that pipeline's vocoder (a neural one, or Griffin-Lim with its settings) or VAE; otherwise the
pipeline gets a new Griffin-Lim vocoder matching the processor, and the output says so.

The output holds model/, processor/, scheduler/, vocoder/ (or vae/ with --vae), the code for trust_remote_code=True,
the default voice (--voice-audio/--voice-text) and README.md. It is written to a temporary folder and renamed into
place; a non-empty OUT is only replaced with --force.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DTYPES,
    ROOT,
    ConversionError,
    check_output_folder,
    check_state_dict,
    load_weights,
    staged_output,
)

# what to do with a vocoder of examples/train_vocoder.py instead of converting it
VOCODER_HINT = (
    "Put {folder} into a pipeline instead: vocoder = VocosVocoder.from_pretrained(...), then "
    'DiTARPipeline(**{{**pipe.components, "vocoder": vocoder}}).save_pretrained(...) '
    '(docs/training.md, "Training the vocoder").'
)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / torch.compile wrappers, should a checkpoint carry them


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "source",
        type=Path,
        help="run folder (with checkpoints/), one checkpoints/step-N folder, or a save_pretrained model folder",
    )
    p.add_argument("out", type=Path, help="pipeline folder to write")
    p.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    p.add_argument("--step", type=int, help="checkpoint step in a run folder (default: the newest)")
    p.add_argument("--weights", choices=["ema", "raw"], default="ema", help="EMA weights (default) or raw weights")
    p.add_argument("--model-config", type=Path, help="config.json (or a model folder) instead of train_config.json")
    p.add_argument("--processor", type=Path, help="processor folder (default: RUN/processor)")
    p.add_argument("--vae", type=Path, help="AutoencoderOobleck folder, for a model trained on its latents")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="dtype of the saved weights")
    p.add_argument(
        "--matmul-dtype",
        choices=["auto", "float32", "bfloat16"],
        help="the pipeline's matmul_dtype setting (auto: bfloat16 products on CPUs that multiply them natively); "
        "default: none (float32), or auto with --card-preset embedded-default, as the shipped folder has",
    )
    p.add_argument("--voice-audio", type=Path, help="default voice: prompt audio")
    p.add_argument("--voice-text", help="default voice: transcript of --voice-audio")
    c = p.add_argument_group("model card")
    c.add_argument("--card-preset", choices=["embedded-default"], help="texts of a card we publish")
    c.add_argument("--results", type=Path, help="results.json of examples/evaluate.py (else placeholders)")
    c.add_argument("--name", help="model name (card title)")
    c.add_argument("--summary", help="one paragraph under the title")
    c.add_argument("--repo-id", help="Hub repo id for the card's code snippets")
    c.add_argument("--license", default="apache-2.0")
    c.add_argument("--datasets", nargs="*", help="training datasets (Hub dataset ids)")
    c.add_argument("--base-model", help="Hub id of the LM the backbone was initialised from")
    return p


def locate_checkpoint(source: Path, step: int | None) -> tuple[Path, Path | None]:
    """(checkpoint folder, run folder or None)."""
    if (source / "model.safetensors").is_file():
        run = source.parent.parent if source.parent.name == "checkpoints" else None
        return source, run
    checkpoints = source / "checkpoints"
    if not checkpoints.is_dir():
        hint = ""
        if (source / "model" / "model.safetensors").is_file():  # e.g. a run's final/ folder
            hint = f"; its model is in {source / 'model'} (with --processor {source / 'processor'})"
        raise ConversionError(
            f"{source}: neither a checkpoint (model.safetensors) nor a run folder (checkpoints/){hint}"
        )
    steps = {
        int(p.name.split("-")[1]): p
        for p in checkpoints.glob("step-*")
        if p.is_dir() and p.name.split("-")[1].isdigit() and (p / "model.safetensors").is_file()
    }
    if not steps:
        raise ConversionError(f"{checkpoints}: no step-N checkpoint with a model.safetensors")
    if step is None:
        return steps[max(steps)], source
    if step not in steps:
        raise ConversionError(f"{checkpoints}: no step-{step} (have {sorted(steps)})")
    return steps[step], source


def load_processor(args, run: Path | None, train_config: dict | None):
    from modeling_ditar import DiTARProcessor

    candidates = [args.processor] if args.processor else []
    if run is not None:
        candidates.append(run / "processor")
    if train_config and train_config.get("init_from"):
        init = Path(train_config["init_from"])
        candidates.append(init / "processor" if (init / "processor").is_dir() else init)
    for folder in candidates:
        if folder is not None and (folder / "processor_config.json").is_file():
            return DiTARProcessor.from_pretrained(folder)
    tried = f" (tried {', '.join(str(c) for c in candidates)})" if candidates else ""
    hint = "pass --processor FOLDER (the run's or the model's)"
    sibling = args.source.parent / "processor"  # a run's final/model sits beside final/processor
    if run is None and (sibling / "processor_config.json").is_file():
        hint = f"pass --processor {sibling}"
        if (args.source.parent.parent / "checkpoints").is_dir():
            hint += f", or give the run {args.source.parent.parent} itself (its newest checkpoint)"
    raise ConversionError(f"no processor folder found{tried}; {hint}")


def build_config(args, run: Path | None, train_config: dict | None, processor):
    """The DiTARConfig the checkpoint was trained with (train.py's `load_model_and_processor`)."""
    from modeling_ditar import DiTARConfig

    if args.model_config is not None:
        return DiTARConfig.from_pretrained(args.model_config)
    if run is not None and (run / "model_config" / "config.json").is_file():
        # train.py's record of the model it trained (from init_from: without its candidate LocDiT, with the run's
        # overrides), which init_from's own config is not
        return DiTARConfig.from_pretrained(run / "model_config")
    if train_config is None:
        raise ConversionError("no train_config.json next to the checkpoint; pass --model-config")
    if train_config.get("init_from"):
        init = Path(train_config["init_from"])
        return DiTARConfig.from_pretrained(init / "model" if (init / "model").is_dir() else init)
    from modeling_ditar.training_data import model_config_for_processor

    return model_config_for_processor(processor, train_config.get("model"))


def read_train_config(run: Path | None) -> dict | None:
    """A training run's train_config.json (None without a run or the file)."""
    if run is None or not (run / "train_config.json").is_file():
        return None
    return json.loads((run / "train_config.json").read_text())


def init_from_folder(train_config: dict | None) -> Path | None:
    """The model or pipeline folder the run started from (train_config.json's init_from), if any."""
    init = (train_config or {}).get("init_from")
    return Path(init) if init else None


def model_dir_of(folder: Path) -> Path:
    """A pipeline folder's model/ (as train.py reads init_from), else the folder itself."""
    return folder / "model" if (folder / "model").is_dir() else folder


def load_generation_config(args, run: Path | None, train_config: dict | None, model) -> str | None:
    """Give `model` the generation config its run trained with; returns where it came from, or None when nothing was
    found and the library defaults stay. The model built from config.json alone has the defaults: the sampling
    settings live in generation_config.json, which train.py saves beside the config (and in final/model)."""
    from modeling_ditar.configuration_ditar import LEGACY_GENERATION_KEYS
    from modeling_ditar.generation_ditar import DiTARGenerationConfig

    folders = []
    if args.model_config is not None:
        folders.append(args.model_config if args.model_config.is_dir() else args.model_config.parent)
    if run is not None:  # model_config/ since train.py saves it there; final/model in runs from before
        folders += [run / "model_config", run / "final" / "model"]
    for folder in folders:
        if (folder / "generation_config.json").is_file():
            model.generation_config = DiTARGenerationConfig.from_pretrained(folder)
            return str(folder / "generation_config.json")
    init = init_from_folder(train_config)
    init_model = model_dir_of(init) if init is not None else None
    if init_model is not None and (init_model / "generation_config.json").is_file():
        model.generation_config = DiTARGenerationConfig.from_pretrained(init_model)
        adjust_like_training(model, init_model)
        return f"{init_model / 'generation_config.json'} (the run's init_from, as training adjusts it)"
    if train_config is not None and init is None:  # a new model: train.py built it from these settings
        settings = {k: v for k, v in (train_config.get("model") or {}).items() if k in LEGACY_GENERATION_KEYS}
        model.generation_config = DiTARGenerationConfig(**settings)
        return f"the model settings of {run / 'train_config.json'} over the library defaults"
    return None


def adjust_like_training(model, init_model: Path) -> None:
    """What train.py does to init_from's generation config when it loads the model: without the candidate LocDiT
    init_from had, the student's step count goes; without a CTC head, a single candidate."""
    if model.candidate_locdit is None and json.loads((init_model / "config.json").read_text()).get("candidate_locdit"):
        model.generation_config.candidate_num_inference_steps = None
    if model.ctc_head is None and (model.generation_config.num_candidates or 1) > 1:
        import importlib.util

        # train.py's own rule, not a copy of it (its dataclasses need the module registered while it loads)
        spec = importlib.util.spec_from_file_location("ditar_train", ROOT / "examples" / "train.py")
        train = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
        spec.loader.exec_module(train)
        train.single_candidate_without_ctc_head(model, init_model)


def init_from_decoder(train_config: dict | None):
    """(vocoder, vae, folder) of the pipeline folder the run started from: a pipeline converted from the run keeps the
    vocoder (a neural one, or Griffin-Lim with its settings) or VAE it was trained to be heard through. (None, None,
    None) when the run did not start from a pipeline folder."""
    import modeling_ditar

    init = init_from_folder(train_config)
    if init is None or not (init / "model_index.json").is_file():
        return None, None, None
    index = json.loads((init / "model_index.json").read_text())
    vocoder_class = (index.get("vocoder") or [None, None])[1]
    vae_class = (index.get("vae") or [None, None])[1]
    if vocoder_class:
        cls = getattr(modeling_ditar, vocoder_class, None)
        if cls is None:
            raise ConversionError(
                f"{init / 'vocoder'} holds a {vocoder_class}, which this version cannot load; put the vocoder into "
                'the converted pipeline yourself (docs/training.md, "Training the vocoder")'
            )
        return cls.from_pretrained(init / "vocoder").eval(), None, init
    if vae_class:
        import diffusers

        cls = getattr(diffusers, vae_class, None)
        if cls is None:
            raise ConversionError(f"{init / 'vae'} holds a {vae_class}, which diffusers cannot load; pass --vae FOLDER")
        return None, cls.from_pretrained(init / "vae").eval(), init
    return None, None, None


def check_model_folder(source: Path) -> None:
    """Refuse a model folder of another kind (a causal LM, say) before transformers fails on it with a traceback."""
    model_type = json.loads((source / "config.json").read_text()).get("model_type")
    if model_type != "ditar":
        raise ConversionError(
            f"{source} holds a {model_type or 'non-DiTAR'} model (config.json's model_type), not a DiTAR model; to "
            f"start a DiTAR model from a causal LM, run conversion/init_from_lm.py {source} OUT"
        )


def load_model_folder(source: Path):
    """The model a save_pretrained folder holds, every tensor of it: from_pretrained fills missing tensors randomly
    and drops unexpected ones with a log line, which would publish a model that was not trained."""
    from modeling_ditar import DiTARForConditionalGeneration

    try:
        model, info = DiTARForConditionalGeneration.from_pretrained(
            source, dtype=torch.float32, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError) as err:  # e.g. no weights, non-finite weights, wrong shapes
        raise ConversionError(f"{source}: {err}") from None
    problems = [f"missing in {source}: {name}" for name in sorted(info["missing_keys"])]
    problems += [f"not in the model: {name} from {source}" for name in sorted(info["unexpected_keys"])]
    problems += [f"shape mismatch for {entry}" for entry in info.get("mismatched_keys") or []]
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ConversionError(
            f"{source} does not fit its config.json ({len(problems)} problem(s)); give a folder save_pretrained "
            "wrote whole, or the run's checkpoint:\n  " + "\n  ".join(shown)
        )
    return model.eval()


def _strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in state.items():
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = tensor
    return out


def find_ema_state(checkpoint: Path) -> dict | None:
    """The diffusers EMAModel state saved by Accelerate's register_for_checkpointing (a dict with shadow_params)."""
    for path in sorted(checkpoint.glob("custom_checkpoint_*.pkl")):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a file that needs unpickling is skipped, never unpickled
            print(f"skipping {path.name}: not loadable with weights_only=True ({type(err).__name__})", file=sys.stderr)
            continue
        if isinstance(state, dict) and isinstance(state.get("shadow_params"), list):
            return state
    return None


def load_checkpoint_state(
    model, checkpoint: Path, run: Path | None, weights: str, train_config: dict | None = None
) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    state = _strip_wrappers(load_weights(checkpoint / "model.safetensors"))
    check_state_dict(expected, state, f"{checkpoint / 'model.safetensors'}")
    if weights == "raw":
        return state
    ema = find_ema_state(checkpoint)
    if ema is None:
        raise ConversionError(
            f"{checkpoint}: no EMA state (custom_checkpoint_*.pkl with shadow_params); pass --weights raw"
        )
    shadow = ema["shadow_params"]
    names_file = run / "param_names.json" if run is not None else None
    if names_file is not None and names_file.is_file():
        names = json.loads(names_file.read_text())
    else:  # EMAModel stores parameters in model.parameters() order, which the rebuilt model reproduces
        names = [name for name, _ in model.named_parameters()]
    modules = (train_config or {}).get("trainable_modules")
    if modules:  # train.py averages only the parameters that train (ema_parameters), in the same order
        names = [name for name in names if name.split(".", 1)[0] in modules]
    if len(shadow) != len(names):
        raise ConversionError(
            f"the EMA state holds {len(shadow)} tensors but the model has {len(names)} parameters; "
            "was the checkpoint written for another model config?"
        )
    ema_state = dict(zip(names, shadow, strict=True))
    check_state_dict({n: expected[n] for n in names if n in expected}, ema_state, f"{checkpoint} (EMA)")
    return {**state, **{n: t.to(state[n].dtype) for n, t in ema_state.items()}}


def card_kwargs(args, checkpoint: Path, step_info: str) -> dict:
    preset = {}
    if args.card_preset == "embedded-default":
        sys.path.insert(0, str(ROOT / "model_cards"))
        from make_card import EMBEDDED_DEFAULT

        preset = dict(EMBEDDED_DEFAULT)
    training = preset.get("training", "")
    training = (training + "\n\n" if training else "") + f"Converted from `{step_info}`."
    return dict(
        model_name=args.name or preset.get("name", "DiTAR"),
        summary=args.summary or preset.get("summary"),
        repo_id=args.repo_id or preset.get("repo_id"),
        results=args.results,
        eval_dataset_name=preset.get("eval_dataset_name", "DiTAR zero-shot evaluation cases"),
        eval_dataset_type=preset.get("eval_dataset_type", "custom"),
        eval_dataset_split=preset.get("eval_dataset_split"),
        license=args.license,
        datasets=args.datasets,
        base_model=args.base_model,
        details=preset.get("details"),
        training=training,
    )


def convert(args) -> Path:
    from modeling_ditar import DiTARForConditionalGeneration
    from modeling_ditar.hub_utils import load_results

    check_output_folder(
        args.out, args.force, args.source, args.model_config, args.processor, args.vae, args.voice_audio, args.results
    )
    if (args.source / "model_index.json").is_file():  # a pipeline's root looks like a model folder too
        raise ConversionError(
            f"{args.source} is already a pipeline folder (it has model_index.json); to rebuild one from its model, "
            f"pass {args.source / 'model'} --processor {args.source / 'processor'}"
        )
    if (args.voice_audio is None) != (args.voice_text is None):
        raise ConversionError("give --voice-audio and --voice-text together")
    if args.results is not None and not args.results.is_file():
        raise ConversionError(f"--results {args.results}: no such file")
    if args.results is not None:
        try:
            load_results(args.results)
        except ValueError as err:  # its message starts with the file's name
            raise ConversionError(f"--results {err}") from None
    if args.voice_audio is not None and not args.voice_audio.is_file():
        raise ConversionError(f"--voice-audio {args.voice_audio}: no such file")
    if args.model_config is not None and not args.model_config.exists():
        raise ConversionError(f"--model-config {args.model_config}: no such file or folder")
    if is_model_folder(args.source):
        component = json.loads((args.source / "config.json").read_text()).get("_class_name")
        if component is not None:  # a diffusers component's config (a vocoder, a scheduler), not a model's
            raise ConversionError(
                f"{args.source} holds a {component}, not a DiTAR model"
                + (f". {VOCODER_HINT.format(folder=args.source)}" if "Vocoder" in component else "")
            )
        if args.step is not None or args.weights != "ema" or args.model_config is not None:
            raise ConversionError(f"{args.source} is a model folder: --step, --weights and --model-config do not apply")
        check_model_folder(args.source)
        processor = load_processor(args, None, None)
        model = load_model_folder(args.source)
        generation = args.source / "generation_config.json"
        # a run's final/model: the run says which pipeline it started from (and so which vocoder)
        run = args.source.parent.parent if args.source.parent.name == "final" else None
        train_config = read_train_config(run)
        return finish(
            args,
            model,
            processor,
            args.source,
            f"{args.source.name} (save_pretrained weights)",
            str(generation) if generation.is_file() else None,
            train_config,
        )
    checkpoint, run = locate_checkpoint(args.source, args.step)
    train_config = read_train_config(run)
    if train_config and isinstance(train_config.get("vocoder"), dict) and "model" not in train_config:
        raise ConversionError(
            f"{run} is a vocoder run (examples/train_vocoder.py): it trained a vocoder, not a text-to-speech model. "
            + VOCODER_HINT.format(folder=run / "vocoder")
        )
    if train_config and train_config.get("lora"):
        raise ConversionError(
            f"{run} is a LoRA run: it trained an adapter, not a model. Load {run / 'final' / 'adapter'} onto its base "
            "with pipe.load_lora_weights(...), then pipe.fuse_lora() and pipe.save_pretrained(...) for a folder with "
            "it built in (examples/finetune.py writes one)."
        )
    processor = load_processor(args, run, train_config)
    config = build_config(args, run, train_config, processor)
    torch.manual_seed(0)
    model = DiTARForConditionalGeneration(config).eval()
    state = load_checkpoint_state(model, checkpoint, run, args.weights, train_config)
    model.load_state_dict(state, strict=True)
    generation = load_generation_config(args, run, train_config, model)
    return finish(
        args,
        model,
        processor,
        checkpoint,
        f"{checkpoint.parent.name}/{checkpoint.name}, {args.weights} weights",
        generation,
        train_config,
    )


def is_model_folder(source: Path) -> bool:
    return (
        (source / "config.json").is_file()
        and not (source / "checkpoints").is_dir()
        and not any(source.glob("custom_checkpoint_*.pkl"))
    )


def finish(
    args, model, processor, source: Path, step_info: str, generation: str | None, train_config: dict | None
) -> Path:
    """Pipeline around the loaded model, default voice, card; written through a staging folder. `generation`: where
    the model's generation config came from (None: the library defaults); `train_config`: the run's settings, whose
    init_from pipeline lends its vocoder."""
    from modeling_ditar import build_pipeline
    from modeling_ditar.hub_utils import (
        describe_pipeline_folder,
        failed_cases_warnings,
        load_results,
        render_model_card,
        results_of_another_model,
    )

    model.to(DTYPES[args.dtype])

    try:  # e.g. several candidates without the CTC head that ranks them: every call would fail
        model.generation_settings()
    except ValueError as err:
        raise ConversionError(f"the generation config from {generation or 'the library defaults'}: {err}") from None
    vocoder, vae, init = None, None, None
    if args.vae is not None:
        from diffusers import AutoencoderOobleck

        vae = AutoencoderOobleck.from_pretrained(args.vae).eval()
    else:
        vocoder, vae, init = init_from_decoder(train_config)
    parts = "the model and the processor" + (f" and the vocoder of {init}" if init is not None else "")
    try:
        pipe = build_pipeline(model, processor, vocoder=vocoder, vae=vae)
    except ValueError as err:  # the pipeline's own checks of its parts, e.g. another --processor's statistics
        raise ConversionError(f"{parts} do not belong together: {err}") from None
    matmul_dtype = args.matmul_dtype or ("auto" if args.card_preset == "embedded-default" else None)
    if matmul_dtype is not None:  # a setting of the folder (model_index.json); the weights are saved as they are
        pipe.register_to_config(matmul_dtype=matmul_dtype)
    if args.voice_audio is not None:
        try:
            pipe.set_default_voice(str(args.voice_audio), args.voice_text)
        except (ValueError, TypeError, FileNotFoundError) as err:
            raise ConversionError(f"--voice-audio / --voice-text: {err}") from None

    with staged_output(args.out) as tmp:
        pipe.save_pretrained(tmp)
        kwargs = card_kwargs(args, source, step_info)
        kwargs["details"] = {**(kwargs["details"] or {}), **describe_pipeline_folder(tmp)}
        try:
            if args.results is not None:
                kwargs["results"] = load_results(args.results)
            card = render_model_card(kind="pipeline", **kwargs)
        except (ValueError, KeyError, TypeError) as err:  # a --results file that is not evaluate.py's results
            raise ConversionError(f"--results {args.results}: {err}") from None
        # the saved weights against those the results were measured on; a model folder is the one path an
        # evaluation could have named, should the evaluated folder be gone
        mismatch = results_of_another_model(kwargs["results"], tmp, source if is_model_folder(source) else None)
        for message in ([mismatch] if mismatch else []) + failed_cases_warnings(kwargs["results"]):
            print(f"warning: {message}", file=sys.stderr)
        card.save(str(tmp / "README.md"))
    if generation is not None:
        print(f"generation settings: {generation}")
    else:
        print(
            f"warning: no generation config found for {source}: the pipeline samples with the library defaults "
            "(steps, guidance, candidates, ...). If the model was trained or tuned with others, put its "
            "generation_config.json beside its config.json (for a checkpoint: in the --model-config folder) and "
            "convert again",
            file=sys.stderr,
        )
    if args.vae is not None:
        print(f"decoder: the VAE of {args.vae}")
    elif init is not None:
        print(f"decoder: the {type(vocoder or vae).__name__} of {init} (the pipeline the run started from)")
    else:
        print(
            "decoder: a new Griffin-Lim vocoder with default settings, matching the processor (the run did not start "
            "from a pipeline folder with a vocoder)"
        )
    repo = args.repo_id or "<org>/<name>"
    print(
        f"wrote {args.out} from {step_info}; publish it with: hf upload {repo} {args.out} . (over an earlier "
        "upload, add the --delete patterns of docs/publishing.md, or use "
        "DiTARPipeline.from_pretrained(folder).push_to_hub(repo), which deletes the earlier upload's files the folder "
        "lacks)"
    )
    return args.out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    convert(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
