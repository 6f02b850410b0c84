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

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from modeling_ditar import DiTARPipeline  # noqa: E402
from modeling_ditar.prompt_transcription import DEFAULT_ASR_MODEL  # noqa: E402

MAX_TEXT_CHARS = 1000
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


def synthesize(
    pipe, text: str, voice_audio, voice_text: str, seed, asr_model: str | None = DEFAULT_ASR_MODEL
) -> tuple[tuple[int, np.ndarray], str]:
    """The demo's one action: ((rate, int16 samples), a status line). User mistakes raise `gr.Error` (`user_error`).
    A recording without a transcript is transcribed by `asr_model` (loaded on first use; None: the transcript is
    required)."""
    text = (text or "").strip()
    if not text:
        raise user_error("Type the text to speak.")
    if len(text) > MAX_TEXT_CHARS:
        raise user_error(f"The text is {len(text)} characters long; this demo speaks at most {MAX_TEXT_CHARS}.")
    prompt = {}
    if voice_audio is not None:
        prompt = dict(prompt_audio=voice_audio)  # a file path, read by the pipeline
        if (voice_text or "").strip():
            prompt["prompt_text"] = voice_text.strip()
        elif asr_model is None:
            raise user_error("Type the transcript of the voice recording (exactly what is said in it).")
        elif pipe.prompt_transcriber is None:
            try:
                pipe.enable_prompt_transcription(asr_model)
            except OSError as err:
                raise user_error(
                    f"Type the transcript of the voice recording: it could not be transcribed ({err})"
                ) from None
    try:
        seed = int(seed) if seed is not None else 0
    except (TypeError, ValueError):
        raise user_error("The seed must be a whole number.") from None
    try:
        out = pipe(text, generator=torch.Generator().manual_seed(seed), **prompt)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:  # the pipeline's checks name the problem
        raise user_error(str(err).replace("(prompt_text)", "(the transcript box)")) from None
    audio = out.audios[0][: out.audio_lengths[0]]
    samples = np.clip(np.round(audio.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    voice = "the uploaded voice" if prompt else "the default voice"
    status = f"{len(samples) / pipe.sample_rate:.2f} s of speech in {voice} (seed {seed})"
    if out.prompt_transcripts and out.prompt_transcripts[0]:
        heard = out.prompt_transcripts[0]
        status += f"; the recording was transcribed as “{heard}” (type the transcript if it is wrong)"
    if not out.stopped[0]:
        status += "; cut at the length limit, the end of the text may be missing"
    return (pipe.sample_rate, samples), status


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
    build_demo(pipe, asr_model).queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
