"""The `ditar` command line: zero-shot text-to-speech with a saved DiTAR pipeline.

    ditar synthesize "Hello there." -o hello.wav
    ditar synthesize "Hello there." --prompt-audio me.wav --prompt-text "What I say in me.wav." -o hello.wav

User errors (a missing file, a bad value, no model) end with exit code 2 and one line on stderr, never a traceback.
This module imports nothing heavy at import time, and when the process is the `ditar` command the package's
`__init__` calls `check_command_line` before its own imports load torch: --help and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import secrets
import shlex
import signal
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path

PROG = "ditar"
DEFAULT_ASR_MODEL = "openai/whisper-base"  # as modeling_ditar.prompt_transcription (not imported here: it loads torch)

DESCRIPTION = """\
DiTAR zero-shot text-to-speech: speak any text in the voice of a short audio prompt (a few seconds of speech and
its transcript), or in the default voice saved with the model.

commands:
  synthesize    speak a text and write it to an audio file
  serve         an OpenAI-compatible HTTP speech server with batching (needs the `serve` extra)"""

EPILOG = """\
examples:
  ditar synthesize "Hello there." -o hello.wav
  ditar synthesize "Hello there." --prompt-audio me.wav --prompt-text "What I say in me.wav." -o hello.wav
  ditar synthesize "A long story. In many sentences." --stream -o story.wav --model path/to/pipeline
  echo "Text from a pipe." | ditar synthesize - -o piped.flac --seed 0
  ditar serve --port 8000

Run 'ditar synthesize --help' or 'ditar serve --help' for every option."""

SYNTH_DESCRIPTION = """\
Speak TEXT and write it to an audio file (the format follows the extension: .wav, .flac, .ogg, ...).
Long texts are split into sentences and spoken one after the other in the same voice."""

SYNTH_EPILOG = """\
examples:
  ditar synthesize "Hello there." -o hello.wav
      the embedded default model and its default voice
  ditar synthesize "Hello there." --prompt-audio me.wav --prompt-text "What I say in me.wav." -o hello.wav
      clone the voice of me.wav (any sample rate, mono or stereo; 3-8 seconds work best)
  ditar synthesize "Hello there." --prompt-audio me.wav -o hello.wav
      the same, with me.wav transcribed by Whisper (--asr-model) since no --prompt-text is given
  ditar synthesize "Hello there." --model ./my-pipeline --steps 16 --guidance-scale 3 --temperature 0 -o hi.wav
      a local pipeline folder, more sampler steps, stronger guidance, deterministic sampling
  ditar synthesize "A long text ..." --stream -o long.wav
      write the audio while it is generated (a player can follow the growing file; Ctrl-C keeps what was written)
  ditar synthesize - -o story.wav < story.txt
      speak the text a file holds (TEXT is the words themselves: the name of an existing file is refused)

exit status: 0 on success, 2 on a user error (bad argument, missing file, no model), 130 when interrupted with
Ctrl-C; SIGTERM ends the command by that signal (143 in a shell)."""


class UsageError(Exception):
    """A mistake of the user: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) that still say where to look."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _int_at_least(minimum: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}")
        return number

    return parse


def _float_in(low: float, high: float | None):
    allowed = f"a number >= {low:g}" if high is None else f"a number in [{low:g}, {high:g}]"

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {value!r}") from None
        if not math.isfinite(number) or number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {value!r}")
        return number

    return parse


MATMUL_DTYPE_HELP = (
    "dtype the model's transformers multiply in (norms, attention and sums stay float32): auto = bfloat16 on CPUs "
    "where it pays (AVX512-BF16 without AMX; first audio about 0.8x), float32 elsewhere (default: the model folder's "
    "setting; the embedded default's is auto)"
)
LOCDIT_DTYPE_HELP = (
    "compute dtype of the per-patch diffusion transformer (LocDiT) alone; the rest stays float32. bfloat16 is faster "
    "on CPUs that multiply bfloat16 natively (AMX, AVX512-BF16): first audio about 0.85x, batches 0.75-0.85x; "
    "elsewhere it is slower (default: float32)"
)


def build_parser() -> argparse.ArgumentParser:
    def formatter(prog):
        return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)

    parser = _Parser(
        prog=PROG,
        usage=f"{PROG} [-h] [--version] COMMAND ...",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    # the commands are listed in DESCRIPTION (argparse's own listing of sub-commands reads poorly)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS, parser_class=_Parser)

    synth = commands.add_parser(
        "synthesize",
        prog=f"{PROG} synthesize",
        description=SYNTH_DESCRIPTION,
        epilog=SYNTH_EPILOG,
        formatter_class=formatter,
    )
    synth.add_argument(
        "text", metavar="TEXT", help="the words to speak ('-' reads them from standard input, e.g. '- < story.txt')"
    )
    synth.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        required=True,
        help="audio file to write (.wav, .flac, .ogg, ...); overwritten if it exists, keeping its permissions (a "
        "symbolic link: the file it points to)",
    )
    voice = synth.add_argument_group("voice", "the voice to clone; without both, the model's default voice is used")
    voice.add_argument(
        "--prompt-audio",
        metavar="FILE",
        help="3-8 seconds of speech in the voice to clone (any sample rate, mono or stereo); a longer "
        "one is cut at a pause to at most 8 s, with its transcript cut to match (a warning says "
        "what was kept)",
    )
    voice.add_argument(
        "--prompt-text",
        metavar="TEXT",
        help="the exact transcript of --prompt-audio; without it the clip is transcribed by --asr-model (an exact "
        "transcript gives the better result)",
    )
    voice.add_argument(
        "--asr-model",
        metavar="MODEL",
        help="speech recognition model that transcribes --prompt-audio when --prompt-text is not given: a Hub id or a "
        f"local folder that transformers' automatic-speech-recognition pipeline loads (default: {DEFAULT_ASR_MODEL}, "
        "downloaded once)",
    )
    model = synth.add_argument_group("model")
    model.add_argument(
        "--model",
        metavar="PATH",
        help="pipeline folder saved with DiTARPipeline.save_pretrained, or a Hub repository id "
        "(default: the model embedded in this installation)",
    )
    model.add_argument(
        "--device",
        default="cpu",
        metavar="DEVICE",
        help="torch device to run on, e.g. cpu, cuda, cuda:1, mps (default: %(default)s)",
    )
    model.add_argument(
        "--threads",
        type=_int_at_least(1),
        metavar="N",
        help="CPU threads for torch (default: 1, or OMP_NUM_THREADS when set; one thread was the fastest for one "
        "text on 2 cores, idle or busy)",
    )
    model.add_argument("--locdit-dtype", choices=("float32", "bfloat16"), default="float32", help=LOCDIT_DTYPE_HELP)
    model.add_argument("--matmul-dtype", choices=("auto", "float32", "bfloat16"), default=None, help=MATMUL_DTYPE_HELP)
    sampling = synth.add_argument_group("sampling (defaults come from the model config)")
    sampling.add_argument(
        "--steps",
        type=_int_at_least(1),
        metavar="N",
        help="diffusion (ODE) steps per patch; more is slower (the embedded default: 4; the paper: 10)",
    )
    sampling.add_argument(
        "--guidance-scale",
        type=_float_in(0.0, None),
        metavar="G",
        help="LM guidance scale g >= 0; 1 disables guidance, larger follows the text more closely",
    )
    sampling.add_argument(
        "--temperature",
        type=_float_in(0.0, 1.0),
        metavar="T",
        help="sampling temperature in [0, 1]; 0 is deterministic, 1 the most varied",
    )
    sampling.add_argument(
        "--max-new-patches",
        type=_int_at_least(1),
        metavar="N",
        help="cap on generated patches per sentence group (default: from the text length)",
    )
    sampling.add_argument(
        "--candidates",
        type=_int_at_least(1),
        metavar="K",
        help="sample K candidates and keep the one the model's CTC head reads as the text most "
        "closely (model default: its config's num_candidates; the embedded model samples 4 with a one-step head and "
        "drops the losers after about a second of speech, at close to the cost of 1 for a single request)",
    )
    sampling.add_argument(
        "--prompt-spectrum-match",
        type=_float_in(0.0, 1.0),
        metavar="S",
        help="how far the speech's average spectrum (voice colour) is moved towards the prompt's, in [0, 1]; 0 leaves "
        "it as generated (model default: its config's prompt_spectrum_match)",
    )
    sampling.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="random seed, for reproducible audio (default: a random one, printed in the summary line)",
    )
    out = synth.add_argument_group("output")
    out.add_argument(
        "--stream",
        action="store_true",
        help="write the audio to FILE while it is generated instead of all at the end (the same audio; with several "
        "candidates, writing starts once one candidate is left). A WAV, AIFF, AU or CAF file's header is updated with "
        "every chunk, so the growing file reads as complete at any moment; Ctrl-C or SIGTERM keeps the audio written "
        "so far as a finished file",
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary line")
    synth.set_defaults(handler=_synthesize, check=_check_synthesize)
    _add_serve_parser(commands, formatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ditar` console script; returns the exit status."""
    args = _parse(argv)
    if isinstance(args, int):
        return args
    try:
        return args.handler(args)
    except UsageError as err:
        print(f"{PROG}: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _parse(argv: list[str] | None) -> argparse.Namespace | int:
    """The parsed arguments, or the exit status when parsing ended the command (help, version, an error: printed)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argument errors (already printed)
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    if args.command is None:
        print(f"{PROG}: error: choose a command, e.g. '{PROG} synthesize' (see '{PROG} --help')", file=sys.stderr)
        return 2
    return args


def check_command_line() -> None:
    """When this process is the `ditar` command (its console script, or `python -m modeling_ditar.cli`), check the
    command line and exit at once on --help, --version or a user error. The package's `__init__` calls this before its
    imports load torch (seconds), so checking arguments costs no more than parsing them; valid arguments run as
    usual."""
    how = _launched_as()
    if how is None:
        return
    args = _parse(sys.argv[1:])
    if isinstance(args, int):
        raise SystemExit(args)
    if args.command in ("synthesize", "serve"):
        quiet_thread_waits()
    try:
        # standard input is read now (and kept) only where `main` will run in this very module
        args.check(args, read_stdin=how == "script")
    except UsageError as err:
        print(f"{PROG}: error: {_one_line(str(err))}", file=sys.stderr)
        raise SystemExit(2) from None
    if how == "module":  # runpy runs this file as __main__ next: it must not find it imported already
        sys.modules.pop(__name__, None)


# OpenMP's environment for the `ditar` command: torch's CPU kernels run on GNU
# OpenMP, whose worker threads spin-wait between parallel regions. When other processes want the cores, the spinning
# threads take CPU time from the thread doing the work: with one core busy elsewhere, a call on 2 threads took 10 to
# 50 times its idle time. PASSIVE makes waiting threads sleep at once.
THREAD_WAIT_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}


def quiet_thread_waits(environ=None, modules=None) -> dict[str, str]:
    """Set `THREAD_WAIT_ENVIRONMENT` in `environ` (default `os.environ`) for the OpenMP runtime torch loads, unless
    the user set a wait policy or spin count (OMP_WAIT_POLICY, GOMP_SPINCOUNT, KMP_BLOCKTIME) or torch is already
    imported (the runtime has read its environment then). Returns what it set. Only `ditar synthesize` and `ditar
    serve` call this, before their imports load torch; importing the library changes no thread setting."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "torch" in modules or any(key in environ for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")):
        return {}
    environ.update(THREAD_WAIT_ENVIRONMENT)
    return dict(THREAD_WAIT_ENVIRONMENT)


def _launched_as() -> str | None:
    """ "script" when the interpreter runs the `ditar` console script, "module" for `python -m modeling_ditar.cli`,
    else None (the interpreter's own command line, `sys.orig_argv`, tells)."""
    argv = list(getattr(sys, "orig_argv", None) or [])[1:]
    takes_value = {"-X", "-W", "--check-hash-based-pycs"}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "-m" or (arg.startswith("-m") and len(arg) > 2):
            module = argv[index + 1] if arg == "-m" and index + 1 < len(argv) else arg[2:]
            return "module" if module == __name__ or module == "modeling_ditar.cli" else None
        if arg == "-c" or arg.startswith("-c") and not arg.startswith("--"):
            return None
        if arg in takes_value:
            index += 2
            continue
        if arg.startswith("-") and arg != "-":
            index += 1
            continue
        name = arg.replace("\\", "/").rsplit("/", 1)[-1].lower()
        for suffix in (".exe", "-script.py", ".py"):
            name = name.removesuffix(suffix)
        return "script" if name == PROG else None
    return None


# ----------------------------------------------------------------------------------------------------------------------
# synthesize


def _check_synthesize(args: argparse.Namespace, read_stdin: bool = True) -> tuple[str | None, Path]:
    """The checks that need no model (nor torch): (text, output path). With `read_stdin=False` a TEXT of '-' is not
    read yet (None)."""
    text = _read_text(args.text) if read_stdin or args.text != "-" else None
    _refuse_a_file_name(args.text)
    output = _check_output(args.output)
    if args.prompt_text is not None and not args.prompt_text.strip():
        raise UsageError(
            "--prompt-text is empty; give the transcript of --prompt-audio, or leave --prompt-text out to have the "
            "clip transcribed"
        )
    if args.asr_model is not None and (args.prompt_audio is None or args.prompt_text is not None):
        raise UsageError(
            "--asr-model transcribes --prompt-audio when --prompt-text is not given, so it is unused here; drop it"
        )
    if args.prompt_text is not None and args.prompt_audio is None:
        raise UsageError("--prompt-text was given without --prompt-audio; pass both, or neither for the default voice")
    if args.prompt_audio is not None:
        prompt = Path(args.prompt_audio)
        if not prompt.is_file():
            raise UsageError(f"--prompt-audio: no such file: {str(prompt)!r}")
    return text, output


def synthesis_threads(requested: int | None, environ=None) -> int | None:
    """torch's intra-op threads for `ditar synthesize`: `--threads` when given, else none set where the user chose
    with OMP_NUM_THREADS, else 1. At this model's size one text is bound by per-op overhead and memory traffic, not
    arithmetic: on 2 cores, one thread took 0.94 s per best-of-4 call idle and 0.97 s with the other core busy, two
    spinning threads 0.64 s and 6.6 s, two sleeping ones (OMP_WAIT_POLICY=PASSIVE) 1.90 s and 1.29 s."""
    environ = os.environ if environ is None else environ
    if requested is not None:
        return requested
    return None if "OMP_NUM_THREADS" in environ else 1


def _synthesize(args: argparse.Namespace) -> int:
    with _sigterm_unwinds():
        return _synthesize_to_file(args)


def _synthesize_to_file(args: argparse.Namespace) -> int:
    text, output = _check_synthesize(args)

    import torch

    threads = synthesis_threads(args.threads)
    if threads is not None:
        torch.set_num_threads(threads)
    pipe = _load_pipeline(
        args.model, args.device, quiet=args.quiet, locdit_dtype=args.locdit_dtype, matmul_dtype=args.matmul_dtype
    )
    pipe.set_progress_bar_config(disable=args.quiet, desc="Generating", unit="patch", leave=False)
    prompt_audio, prompt_text, prompt_rate = args.prompt_audio, args.prompt_text, None
    if prompt_audio is not None and prompt_text is None:
        prompt_audio, prompt_text, prompt_rate = _transcribe_prompt(pipe, args)
    # a seed drawn here rather than torch's global generator: printed, it lets the user reproduce a take they liked
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    call = dict(
        text=text,
        prompt_audio=prompt_audio,
        prompt_text=prompt_text,
        sampling_rate=prompt_rate,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        temperature=args.temperature,
        max_new_patches=args.max_new_patches,
        generator=torch.Generator().manual_seed(seed),
        prompt_spectrum_match=args.prompt_spectrum_match,
    )
    start = time.perf_counter()
    try:
        with _without_cap_warning():  # said below in the command's own words, and not with -q
            if args.stream:
                seconds, first, stopped = _write_stream(pipe, dict(call, num_candidates=args.candidates), output, seed)
            else:
                result = pipe(**call, num_candidates=args.candidates)
                audio = result.audios[0][: result.audio_lengths[0]]
                _write_atomic(output, audio, pipe.sample_rate)
                seconds, first, stopped = len(audio) / pipe.sample_rate, None, result.stopped[0]
    except (ValueError, FileNotFoundError) as err:  # the pipeline's input checks
        raise UsageError(str(err)) from err
    elapsed = time.perf_counter() - start
    if not args.quiet:
        if stopped is False:
            print(
                f"{PROG}: warning: generation was cut at the patch limit (--max-new-patches or the default for this "
                "text length); the end of the text may be missing",
                file=sys.stderr,
            )
        extra = "" if first is None else f", first audio after {first:.2f} s"
        print(
            f"Wrote {output} ({seconds:.2f} s of audio at {pipe.sample_rate} Hz in {elapsed:.2f} s{extra}; "
            f"--seed {seed} makes it again)",
            file=sys.stderr,
        )
    return 0


def _transcribe_prompt(pipe, args: argparse.Namespace):
    """(audio, transcript, rate) of --prompt-audio transcribed by --asr-model (cut at a pause first when it is longer
    than the model's working range); says what was heard on stderr. The clip is checked before the model loads."""
    asr = args.asr_model or DEFAULT_ASR_MODEL
    rate = pipe._prompt_rate
    try:
        waveform = pipe.processor.load_prompt_audio(args.prompt_audio, target_rate=rate)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from err
    if not args.quiet:
        print(f"Loading {asr} to transcribe {args.prompt_audio} (no --prompt-text) ...", file=sys.stderr)
    try:
        with _transformers_errors_only(), _all_cores_unless_chosen(args.threads):
            pipe.enable_prompt_transcription(asr, device=args.device)
            audio, transcript, rate, _ = pipe._transcribe_missing(waveform.numpy(), None, rate)
    except OSError as err:  # not a folder, not on the Hub (or offline), not a speech recognition model
        option = "--asr-model" if args.asr_model else f"no --prompt-text, so --prompt-audio is transcribed by {asr}"
        raise UsageError(f"{option}: {err}") from err
    except (ValueError, RuntimeError) as err:  # nothing heard, a loop, a transcript the checks refuse, a failure
        raise UsageError(str(err).replace("(prompt_text)", "(--prompt-text)")) from err
    if not args.quiet:
        print(
            f"{PROG}: heard {transcript!r}; if that is not what is said, pass --prompt-text with the exact transcript",
            file=sys.stderr,
        )
    return audio, transcript, rate


@contextlib.contextmanager
def _all_cores_unless_chosen(threads: int | None):
    """Whisper's encoder reads 30 s of padded audio in large matrix products, which, unlike the small steps of
    generation, gain from every core: Whisper-base took 1.9 s per prompt on one thread and 1.2 s on two (2-core CPU).
    The user's --threads or OMP_NUM_THREADS, when set, are kept."""
    import torch

    if threads is not None or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _transformers_errors_only():
    """transformers' own notices while the recogniser loads and runs (e.g. "Couldn't connect to the Hub", generation
    argument deprecations) would repeat or bury the command's message; its errors still raise."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


_stdin_text: str | None = None


def _read_text(text: str) -> str:
    global _stdin_text
    if text == "-":
        if _stdin_text is None:  # read once: the early check and the command itself both ask
            _stdin_text = sys.stdin.read()
        text = _stdin_text
    if not text.strip():
        raise UsageError("TEXT is empty; give the words to speak (or '-' to read them from standard input)")
    return text


def _refuse_a_file_name(text: str) -> None:
    """A TEXT of one word that names an existing file was meant as the file to read, not as words to speak (speaking
    "story dot t x t" helps nobody): refused with the command that reads it. Words with a space are spoken."""
    if text != "-" and not any(char.isspace() for char in text) and os.path.isfile(text):
        raise UsageError(
            f"TEXT {text!r} is the name of a file, and TEXT is the words to speak; to speak what the file holds, read "
            f"it from standard input: {PROG} synthesize - < {shlex.quote(text)} (with your other options)"
        )


def _check_output(path: str) -> Path:
    import soundfile as sf

    output = Path(path).expanduser()
    if output.is_dir():
        raise UsageError(f"--output: {str(output)!r} is a folder; give a file name such as speech.wav")
    if not output.parent.is_dir():
        raise UsageError(f"--output: the folder {str(output.parent)!r} does not exist")
    target = _link_target(output)
    if not target.parent.is_dir():
        raise UsageError(
            f"--output: {str(output)!r} is a link to {str(target)!r}, whose folder does not exist; fix the link or "
            "remove it"
        )
    extension = output.suffix.lstrip(".").upper()
    # RAW is headerless: it needs a sample format that no extension names
    if extension not in sf.available_formats() or sf.default_subtype(extension) is None:
        known = ", ".join(sorted("." + f.lower() for f in ("WAV", "FLAC", "OGG") if f in sf.available_formats()))
        raise UsageError(
            f"--output: cannot tell the audio format from {output.name!r}; use an extension such as {known}"
        )
    return output


def _load_pipeline(
    model: str | None, device: str, quiet: bool, locdit_dtype: str = "float32", matmul_dtype: str | None = None
):
    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from . import DiTARPipeline
    from .pipeline_ditar import EMBEDDED_DEFAULT

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    if model is None:
        if not (EMBEDDED_DEFAULT / "model_index.json").is_file():
            raise UsageError(
                "no default model is installed with this copy of modeling_ditar; pass --model PATH "
                "(a pipeline folder saved with DiTARPipeline.save_pretrained)"
            )
    elif Path(model).expanduser().exists():
        folder = Path(model).expanduser()
        if not (folder / "model_index.json").is_file():
            raise UsageError(f"--model: {model!r} is not a DiTAR pipeline folder (it has no model_index.json)")
        model = str(folder)
    elif _looks_like_a_path(model):
        raise UsageError(f"--model: no such folder: {model!r}")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise UsageError(f"--device: {err}") from err
    if not quiet:
        print(f"Loading {'the default model' if model is None else model} ...", file=sys.stderr)
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "Couldn't connect to the Hub ..." would repeat the error below
    try:
        pipe = DiTARPipeline.from_pretrained(model)
    except (OSError, ValueError) as err:  # not found locally nor on the Hub (offline), or not a DiTAR pipeline
        raise UsageError(f"--model: could not load {model!r}: {err}") from err
    finally:
        diffusers_logging.set_verbosity(verbosity)
    try:
        pipe = pipe.to(device)
    except (RuntimeError, AssertionError) as err:  # e.g. CUDA asked for on a machine without it
        raise UsageError(f"--device: cannot use {str(device)!r}: {err}") from err
    # LocDiT's small matrices run about twice as fast in bfloat16 where the CPU multiplies it natively; its layer norms,
    # GELU and attention do not, so the whole call gains less. Quality stayed within the noise of paired evaluations.
    pipe.model.set_locdit_dtype(getattr(torch, locdit_dtype))
    # chosen again now that the model is on its device ("auto" means bfloat16 only on a CPU that multiplies it)
    pipe.model.set_matmul_dtype(matmul_dtype or pipe.config.matmul_dtype)
    return pipe


def _link_target(output: Path) -> Path:
    """The file that writing `output` changes: itself, or the file a symbolic link (or a chain of them) points to."""
    return Path(os.path.realpath(output))


def _write_atomic(output: Path, audio, sample_rate: int) -> None:
    """Write next to the target and rename into place, so a failure never leaves a truncated file behind. A symbolic
    link stays a link (its target is replaced, in the target's folder: a rename cannot cross file systems), and an
    existing file keeps its permission bits (a private file stays private)."""
    import numpy as np
    import soundfile as sf

    target = _link_target(output)
    # the format follows the name the user gave, as it does when streaming through the link
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=output.suffix, dir=target.parent)
    os.close(handle)
    try:
        os.chmod(temporary, _mode_for(target))  # mkstemp makes the file private
        sf.write(temporary, np.clip(audio, -1.0, 1.0), sample_rate)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode_for(target: Path) -> int:
    """The permission bits a written `target` gets: those it has, or a new file's usual ones (0o666 less the umask)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def _without_cap_warning():
    """Drops the pipeline's warning that the patch cap ended the text, which `synthesize` words itself."""
    from .generation_ditar import CUT_BY_CAP_WARNING
    from .pipeline_ditar import logger as pipeline_logger

    class DropCapWarning(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return CUT_BY_CAP_WARNING not in record.getMessage()

    drop = DropCapWarning()
    pipeline_logger.addFilter(drop)
    try:
        yield
    finally:
        pipeline_logger.removeFilter(drop)


def _write_stream(pipe, call: dict, output: Path, seed: int) -> tuple[float, float, bool]:
    """Write chunks as `pipe.stream` yields them; returns (seconds of audio, seconds until the first chunk, whether
    the model ended the speech itself). Interrupted (Ctrl-C, SIGTERM), it keeps the audio written so far as a
    finished file and says so; after another error the unfinished file is removed."""
    import numpy as np

    start = time.perf_counter()
    chunks = pipe.stream(**call)  # checks the inputs (and reads the prompt) before the file is opened
    handle, first = None, None
    try:
        for chunk in chunks:
            if handle is None:
                first = time.perf_counter() - start
                # opened at the first chunk: stopped before it, the command leaves an existing FILE as it was
                handle = _open_stream_output(output, pipe.sample_rate)
            handle.write(np.clip(chunk, -1.0, 1.0))
            handle.flush()
        if handle is None:  # no chunk at all: an empty file, as the call without --stream writes
            handle = _open_stream_output(output, pipe.sample_rate)
        handle.close()
    except (KeyboardInterrupt, _Terminated):
        _keep_interrupted(handle, output, pipe.sample_rate, seed)
        raise
    except BaseException:
        if handle is not None:
            with contextlib.suppress(Exception):  # the error that stopped the stream is the one to report
                handle.close()
            _link_target(output).unlink(missing_ok=True)  # the unfinished file; a symbolic link to it stays
        raise
    return handle.frames / pipe.sample_rate, first if first is not None else 0.0, bool(chunks.stopped)


# libsndfile's SFC_SET_UPDATE_HEADER_AUTO, which soundfile does not name
SFC_SET_UPDATE_HEADER_AUTO = 0x1061
# formats whose header holds the data's size, written as 0 until the file is closed unless it is updated as it grows
# (Ogg's header is not of this kind, and rewriting it spoils the file)
SIZED_HEADER_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "AIFF", "AU", "CAF"})


def _open_stream_output(output: Path, sample_rate: int):
    """`output` opened for writing (through a symbolic link; an existing file keeps its mode), with its header kept
    up to date where the format has sizes in it: readers such as Python's `wave`, which trust the sizes, then read
    the audio written so far at any moment, and a player can follow the growing file."""
    import soundfile as sf

    handle = sf.SoundFile(output, "w", samplerate=sample_rate, channels=1)
    if handle.format in SIZED_HEADER_FORMATS:
        _update_header_on_every_write(handle)
    return handle


def _update_header_on_every_write(handle) -> bool:
    """Ask libsndfile to rewrite `handle`'s header after every write; False where this soundfile does not expose
    libsndfile's commands (the file is then only complete once closed, as before)."""
    import soundfile as sf

    library, ffi, file = getattr(sf, "_snd", None), getattr(sf, "_ffi", None), getattr(handle, "_file", None)
    if library is None or ffi is None or file is None or not hasattr(library, "sf_command"):
        return False
    return bool(library.sf_command(file, SFC_SET_UPDATE_HEADER_AUTO, ffi.NULL, 1))


def _keep_interrupted(handle, output: Path, sample_rate: int, seed: int) -> None:
    """Close an interrupted stream's file (the audio so far stays, with a complete header) and say what was kept."""
    if handle is None:
        print(f"{PROG}: stopped before the first audio; {output} was not written", file=sys.stderr)
        return
    handle.close()
    print(
        f"{PROG}: kept the {handle.frames / sample_rate:.2f} s of audio generated so far in {output} (--seed {seed} "
        "makes it again)",
        file=sys.stderr,
    )


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread while `synthesize` runs (see `_sigterm_unwinds`)."""


@contextlib.contextmanager
def _sigterm_unwinds():
    """While `synthesize` runs, SIGTERM unwinds the command as Ctrl-C does (a stream keeps the audio written so far,
    the temporary file of a one-shot write is removed), then ends the process by the signal as before, so its exit
    status still says SIGTERM (143 in a shell). A SIGTERM handler someone else installed, or an ignored SIGTERM, is
    left alone, and so is a call outside the main thread (only it receives signals in Python)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def raise_terminated(signum, frame):
        raise _Terminated

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    except _Terminated:
        print(f"{PROG}: terminated", file=sys.stderr, flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise SystemExit(128 + signal.SIGTERM) from None  # where the signal did not end the process at once
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# ----------------------------------------------------------------------------------------------------------------------
# serve

API_KEY_ENVIRONMENT = "DITAR_API_KEY"  # read when --api-key is not given: a key in argv shows in the process list

SERVE_DESCRIPTION = """\
Serve the model over HTTP with OpenAI's speech API: POST /v1/audio/speech, voices uploaded once with POST /v1/voices
(GET lists them), GET /health. Concurrent requests are batched."""

SERVE_EPILOG = """\
examples:
  ditar serve
      the embedded default model on http://127.0.0.1:8000
  ditar serve --model ./my-pipeline --port 9000 --max-batch-size 16 --candidates 1
  DITAR_API_KEY=$(cat key.txt) ditar serve --host 0.0.0.0
      serve other machines; requests must send 'Authorization: Bearer <the key>'
  curl -s localhost:8000/v1/audio/speech -H 'Content-Type: application/json' \\
       -d '{"model": "ditar", "input": "Hello there.", "voice": "default"}' -o hello.mp3

exit status: 0 after a clean shutdown (Ctrl-C or SIGTERM), 2 on a user error."""


def _add_serve_parser(commands, formatter) -> None:
    serve = commands.add_parser(
        "serve", prog=f"{PROG} serve", description=SERVE_DESCRIPTION, epilog=SERVE_EPILOG, formatter_class=formatter
    )
    net = serve.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    net.add_argument("--port", type=_int_in(1, 65535), default=8000, metavar="N", help="port (default: %(default)s)")
    net.add_argument(
        "--api-key",
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' (OpenAI clients: api_key=KEY) on every request but /health and the "
        f"API docs pages. Default: the {API_KEY_ENVIRONMENT} environment variable, which keeps the key out of the "
        "process list (prefer it); without either, anyone who can reach the port may use the server",
    )
    model = serve.add_argument_group("model")
    model.add_argument("--model", metavar="PATH", help="pipeline folder or Hub id (default: the embedded model)")
    model.add_argument("--device", default="cpu", metavar="DEVICE", help="torch device (default: %(default)s)")
    model.add_argument("--locdit-dtype", choices=("float32", "bfloat16"), default="float32", help=LOCDIT_DTYPE_HELP)
    model.add_argument("--matmul-dtype", choices=("auto", "float32", "bfloat16"), default=None, help=MATMUL_DTYPE_HELP)
    model.add_argument("--model-name", default="ditar", metavar="NAME", help="name /health reports (default: ditar)")
    model.add_argument(
        "--asr-model",
        metavar="MODEL",
        help="transcribe voice uploads sent without their transcript with this speech recognition model (a Hub id "
        f"such as {DEFAULT_ASR_MODEL} or a local folder, loaded at start); without it uploads need their transcript",
    )
    limits = serve.add_argument_group("batching and limits")
    limits.add_argument(
        "--max-batch-size", type=_int_at_least(1), default=8, metavar="N", help="most requests per batch (default: 8)"
    )
    limits.add_argument(
        "--batch-wait-ms",
        type=_float_in(0.0, 10000.0),
        default=10.0,
        metavar="MS",
        help="how long a batch waits for more requests (default: 10)",
    )
    limits.add_argument(
        "--max-queue",
        type=_int_at_least(1),
        default=32,
        metavar="N",
        help="requests queued, running or streaming at once; more get 429 (default: 32)",
    )
    limits.add_argument(
        "--timeout",
        type=_float_in(0.1, None),
        default=120.0,
        metavar="S",
        help="seconds a request may wait and run; later it gets 504 (default: 120)",
    )
    limits.add_argument(
        "--max-text-chars", type=_int_at_least(1), default=1000, metavar="N", help="longest input text (default: 1000)"
    )
    limits.add_argument(
        "--max-upload-mb", type=_float_in(0.001, None), default=10.0, metavar="MB", help="largest voice upload (10)"
    )
    limits.add_argument(
        "--max-voices", type=_int_at_least(1), default=64, metavar="N", help="uploaded voices kept (default: 64)"
    )
    limits.add_argument(
        "--shutdown-timeout",
        type=_float_in(0.0, None),
        default=30.0,
        metavar="S",
        help="on Ctrl-C/SIGTERM, seconds running requests get to finish before they are cancelled (default: 30)",
    )
    sampling = serve.add_argument_group("sampling (defaults come from the model config)")
    sampling.add_argument("--steps", type=_int_at_least(1), metavar="N", help="diffusion (ODE) steps per patch")
    sampling.add_argument("--guidance-scale", type=_float_in(0.0, None), metavar="G", help="LM guidance scale")
    sampling.add_argument("--temperature", type=_float_in(0.0, 1.0), metavar="T", help="sampling temperature")
    sampling.add_argument(
        "--candidates",
        type=_int_at_least(1),
        metavar="K",
        help="best-of-K candidates per request (model default: its config's num_candidates; the embedded model's "
        "best of 4 costs close to one candidate: its losers are dropped after about a second of speech)",
    )
    sampling.add_argument(
        "--prompt-spectrum-match",
        type=_float_in(0.0, 1.0),
        metavar="S",
        help="how far the speech's average spectrum is moved towards the voice's, in [0, 1]",
    )
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    serve.set_defaults(handler=_serve, check=_check_serve)


def _int_in(low: int, high: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high}], got {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high}], got {value!r}")
        return number

    return parse


def _check_serve(args: argparse.Namespace, read_stdin: bool = True) -> None:
    """The checks of `ditar serve` that need neither torch nor the server's packages loaded."""
    from importlib.util import find_spec

    missing = [name for name in ("fastapi", "uvicorn", "multipart") if find_spec(name) is None]
    if missing:
        raise UsageError(
            f"ditar serve needs the serve extra ({', '.join(missing)} missing): pip install -e '.[serve]' in the DiTAR "
            "source folder"
        )
    if args.model is not None and not Path(args.model).expanduser().exists() and _looks_like_a_path(args.model):
        raise UsageError(f"--model: no such folder: {args.model!r}")
    serve_api_key(args)


def serve_api_key(args: argparse.Namespace, environ=None) -> str | None:
    """The key `ditar serve` requires: --api-key, else the `DITAR_API_KEY` environment variable (of `environ`, default
    `os.environ`), else None (no key). A key clients could not send in a header is a `UsageError`; an empty one too,
    since serving without a key is done by leaving both out."""
    environ = os.environ if environ is None else environ
    if args.api_key is not None:
        key, source = args.api_key, "--api-key"
    elif API_KEY_ENVIRONMENT in environ:
        key, source = environ[API_KEY_ENVIRONMENT], f"the {API_KEY_ENVIRONMENT} environment variable"
    else:
        return None
    if not key.strip():
        raise UsageError(
            f"{source} is empty; give the key clients must send, or leave out both --api-key and "
            f"{API_KEY_ENVIRONMENT} to serve without one"
        )
    if key != key.strip():  # HTTP drops the spaces around a header's value, so no client could send this key
        raise UsageError(f"{source} starts or ends with whitespace; give the key without it")
    if not all(" " <= char <= "~" for char in key):  # clients send headers as ASCII
        raise UsageError(f"{source} holds characters other than printable ASCII; choose a key of letters and digits")
    return key


def server_settings(args: argparse.Namespace, environ=None):
    """The `ServerSettings` of `ditar serve`'s arguments (and the API key's environment variable, see
    `serve_api_key`)."""
    from .server import ServerSettings

    return ServerSettings(
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        max_queue=args.max_queue,
        request_timeout=args.timeout,
        max_text_chars=args.max_text_chars,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_voices=args.max_voices,
        shutdown_timeout=args.shutdown_timeout,
        model_name=args.model_name,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        temperature=args.temperature,
        num_candidates=args.candidates,
        prompt_spectrum_match=args.prompt_spectrum_match,
        api_key=serve_api_key(args, environ),
    )


def _serve(args: argparse.Namespace) -> int:
    _check_serve(args)
    pipe = _load_pipeline(
        args.model, args.device, quiet=False, locdit_dtype=args.locdit_dtype, matmul_dtype=args.matmul_dtype
    )
    pipe.set_progress_bar_config(disable=True)
    if args.asr_model is not None:
        print(f"Loading {args.asr_model} to transcribe voice uploads without a transcript ...", file=sys.stderr)
        try:
            with _transformers_errors_only():
                pipe.enable_prompt_transcription(args.asr_model, device=args.device)
        except OSError as err:
            raise UsageError(f"--asr-model: {err}") from err

    from .server import run

    run(pipe, server_settings(args), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _looks_like_a_path(name: str) -> bool:
    """A Hub repository id is `name` or `owner/name`; anything else is meant as a local folder."""
    return name.startswith((".", "~", "/")) or "\\" in name or name.count("/") > 1 or os.path.isabs(name)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("modeling-ditar")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
