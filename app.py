"""DiTAR in the browser: type a text, upload or record a voice (with its transcript, or let Whisper transcribe it),
listen to or download the result.

    pip install -e ".[demo]" && python app.py            # http://127.0.0.1:7860
    python app.py --model ./my-pipeline --port 7861
    python app.py --asr-model none                       # always ask for the voice recording's transcript

A Hugging Face Space runs this file as it is (the Space's `requirements.txt` installs this package and gradio); there
GRADIO_SERVER_NAME and GRADIO_SERVER_PORT choose the address. The guide is docs/serving.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from modeling_ditar import DiTARPipeline  # noqa: E402
from modeling_ditar.call_warnings import logged_warnings  # noqa: E402
from modeling_ditar.generation_ditar import CUT_BY_CAP_WARNING  # noqa: E402
from modeling_ditar.prompt_transcription import DEFAULT_ASR_MODEL  # noqa: E402

MAX_TEXT_CHARS = 1000
# the seeds torch.Generator.manual_seed takes (a negative seed counts from 2**64 down)
MIN_SEED, MAX_SEED = -(2**63), 2**64 - 1
EXAMPLE_TEXT = "The quick brown fox jumps over the lazy dog."

INTRO = """# DiTAR text-to-speech
Type English text and press **Speak**. To clone a voice, upload or record 3 to 8 seconds of clear speech and type
exactly what is said in it (left empty, it is transcribed by Whisper); without a recording the model's default voice
speaks. The shipped model is small and was trained on synthetic voices: it clones natural human voices only roughly."""


def user_error(message: str) -> gr.Error:
    """A mistake of the user's: shown on the page, without a traceback on the console (gradio prints one for every
    other error)."""
    try:
        return gr.Error(message, print_exception=False)
    except TypeError:  # gradio versions before the option
        return gr.Error(message)


# The pipeline's messages name its arguments; the page calls them as its boxes are labelled. A recording's loading
# errors read "prompt_audio: `audio` is ..." (the argument, then the loader's own name for the clip).
_ARGUMENT_NAMES = re.compile(
    r"(?P<transcript_box>\(`?prompt_text`?\))"
    r"|(?P<recording>`?\bprompt_audio\b`?(?::\s*`audio`)?(?!=)|`audio`)"
    r"|(?P<transcript>`?\bprompt_text\b`?(?!=))"
    r"|(?P<text>`text`)"
)
_BOX_NAMES = {
    "transcript_box": "(in the transcript box)",
    "recording": "the voice recording",
    "transcript": "the transcript",
    "text": "the text to speak",
}


def page_message(message: str) -> str:
    """A pipeline message with its argument names (`prompt_audio`, `prompt_text`, `text`, with or without backticks)
    replaced by what the page calls them, capitalised where a sentence starts."""

    def box(match: re.Match) -> str:
        name = _BOX_NAMES[match.lastgroup]
        before = message[: match.start()].rstrip()
        return name[0].upper() + name[1:] if not before or before.endswith((".", "!", "?")) else name

    return _ARGUMENT_NAMES.sub(box, message)


def pipeline_warnings(pipe):
    """`with pipeline_warnings(pipe) as warnings:` collects into the list `warnings` what the pipeline's package logs
    at WARNING or above in this thread during the block (a prompt cut at a pause, characters dropped from a text,
    speech much shorter than its text, ...), named as the page names its boxes. The console prints them as before."""
    return logged_warnings(pipe, rename=page_message)


def with_notes(text: str, notes: list[str]) -> str:
    """`text` followed by each of `notes` as a paragraph of its own."""
    return "\n\n".join([text, *(f"Note: {note}" for note in notes)])


def parse_seed(seed) -> int:
    """The Seed box's value as a seed `torch.Generator.manual_seed` takes (an empty box: 0)."""
    if seed is None:
        return 0
    try:
        value = int(seed)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        value = None
    if value is None or not MIN_SEED <= value <= MAX_SEED:
        raise user_error(f"The Seed must be a whole number from {MIN_SEED} to {MAX_SEED}; got {seed!r}.")
    return value


# speech recognisers that could not be loaded, with the message shown: not retried until the demo restarts (each try
# without network waits for the Hub's retries, close to a minute, and holds the queue meanwhile)
_RECOGNISER_FAILURES: dict[str, str] = {}


def enable_recogniser(pipe, asr_model: str) -> None:
    """Load `asr_model` as `pipe`'s prompt transcriber, or raise the `user_error` of a failed load (the one remembered
    from an earlier failure, at once)."""
    if asr_model not in _RECOGNISER_FAILURES:
        try:
            pipe.enable_prompt_transcription(asr_model)
            return
        except OSError as err:
            _RECOGNISER_FAILURES[asr_model] = page_message(
                f"Type the transcript of the voice recording: it could not be transcribed ({err})"
            )
    raise user_error(_RECOGNISER_FAILURES[asr_model])


def recogniser_note(asr_model: str | None) -> str | None:
    """A start-up note when `asr_model` cannot be loaded without the network (a missing folder, or a Hub model not in
    the local cache), found without loading it; None when it is a folder or cached (or there is no recogniser)."""
    if asr_model is None:
        return None
    from huggingface_hub import constants, try_to_load_from_cache

    from modeling_ditar.hub_utils import looks_like_a_local_path

    if looks_like_a_local_path(asr_model):
        if os.path.isdir(os.path.expanduser(asr_model)):
            return None
        return f"the speech recogniser {asr_model!r} is not a folder: voice recordings need their transcript typed."
    try:
        cached = isinstance(try_to_load_from_cache(asr_model, "config.json"), str)
    except ValueError:  # not a valid Hub id: the load names the mistake
        cached = False
    if cached:
        return None
    if constants.HF_HUB_OFFLINE:
        return (
            f"the speech recogniser {asr_model!r} is not downloaded and HF_HUB_OFFLINE is set: voice recordings need "
            "their transcript typed (or give --asr-model a local folder)."
        )
    return (
        f"the speech recogniser {asr_model!r} is not downloaded yet: it is fetched from the Hub for the first "
        "recording sent without a transcript; if that fails (no network), recordings need their transcript typed "
        "until the demo restarts."
    )


def synthesize(
    pipe, text: str, voice_audio, voice_text: str, seed, asr_model: str | None = DEFAULT_ASR_MODEL
) -> tuple[tuple[int, np.ndarray], str]:
    """The demo's one action: ((rate, int16 samples), a status line followed by the pipeline's warnings, if any).
    User mistakes raise `gr.Error` (`user_error`), named as the page names its boxes. A recording without a transcript
    is transcribed by `asr_model` (loaded on first use, and not tried again once that failed; None: the transcript is
    required)."""
    text = (text or "").strip()
    if not text:
        raise user_error("Type the text to speak.")
    if len(text) > MAX_TEXT_CHARS:
        raise user_error(f"The text is {len(text)} characters long; this demo speaks at most {MAX_TEXT_CHARS}.")
    seed = parse_seed(seed)
    prompt = {}
    if voice_audio is not None:
        prompt = dict(prompt_audio=voice_audio)  # a file path, read by the pipeline
        if (voice_text or "").strip():
            prompt["prompt_text"] = voice_text.strip()
        elif asr_model is None:
            raise user_error("Type the transcript of the voice recording (exactly what is said in it).")
        elif pipe.prompt_transcriber is None:
            enable_recogniser(pipe, asr_model)
    with pipeline_warnings(pipe) as warnings:
        try:
            out = pipe(text, generator=torch.Generator().manual_seed(seed), **prompt)
        except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:  # the pipeline's checks name it
            # with the warnings before it: a recording cut at a pause, say, explains a refusal of the part kept
            raise user_error(with_notes(page_message(str(err)), warnings)) from None
    audio = out.audios[0][: out.audio_lengths[0]]
    samples = np.clip(np.round(audio.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    voice = "the uploaded voice" if prompt else "the default voice"
    status = f"{len(samples) / pipe.sample_rate:.2f} s of speech in {voice} (seed {seed})"
    if out.prompt_transcripts and out.prompt_transcripts[0]:
        heard = out.prompt_transcripts[0]
        status += f"; the recording was transcribed as “{heard}” (type the transcript if it is wrong)"
    if not out.stopped[0]:
        status += "; cut at the length limit, the end of the text may be missing"
    # the status says that in the page's words; the pipeline's own warning of it speaks of its arguments
    notes = [note for note in warnings if CUT_BY_CAP_WARNING not in note]
    return (pipe.sample_rate, samples), with_notes(status, notes)


def build_demo(pipe, asr_model: str | None = DEFAULT_ASR_MODEL) -> gr.Blocks:
    """The Gradio app for `pipe` (a `DiTARPipeline`); `asr_model` transcribes recordings sent without a transcript."""
    with gr.Blocks(title="DiTAR text-to-speech") as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Text to speak", value=EXAMPLE_TEXT, lines=4, max_length=MAX_TEXT_CHARS)
                voice_audio = gr.Audio(
                    label="Voice to clone (optional): upload or record 3-8 s of speech",
                    sources=["upload", "microphone"],
                    type="filepath",  # read by the pipeline (soundfile): no ffmpeg needed
                )
                voice_text = gr.Textbox(
                    label="Transcript of the voice recording (left empty: transcribed by Whisper)", lines=2
                )
                seed = gr.Number(label="Seed", value=0, precision=0)
                speak = gr.Button("Speak", variant="primary")
            with gr.Column():
                result = gr.Audio(label="Speech", type="numpy", format="wav", interactive=False, elem_id="speech")
                status = gr.Markdown(elem_id="status")
        speak.click(
            lambda *args: synthesize(pipe, *args, asr_model=asr_model),
            inputs=[text, voice_audio, voice_text, seed],
            outputs=[result, status],
            api_name="speak",
        )
    return demo


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="DiTAR text-to-speech in the browser (Gradio).")
    parser.add_argument("--model", help="pipeline folder or Hub id (default: the model shipped with the package)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument(
        "--asr-model",
        default=DEFAULT_ASR_MODEL,
        help="speech recognition model (Hub id or folder) that transcribes voice recordings sent without their "
        "transcript, loaded on first use; 'none' requires the transcript (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        pipe = DiTARPipeline.from_pretrained(args.model)
    except (OSError, ValueError) as err:  # a missing folder, a Hub id out of reach, a folder of something else
        parser.exit(2, f"{parser.prog}: error: --model {args.model!r}: {err}\n")
    pipe.set_progress_bar_config(disable=True)
    asr_model = None if args.asr_model.lower() == "none" else args.asr_model
    note = recogniser_note(asr_model)
    if note is not None:
        print(f"{parser.prog}: note: {note}", file=sys.stderr)
    build_demo(pipe, asr_model).queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
