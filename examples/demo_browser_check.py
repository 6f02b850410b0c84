"""Drive the Gradio demo (app.py) in headless Chromium: upload a voice, type a text, press Speak, check the audio the
page returns and save a screenshot.

    python examples/demo_browser_check.py --screenshot docs/figures/demo.png

Needs the `demo` extra (gradio), the `playwright` Python package (its driver only: no browser download) and a Chromium
(Debian: `apt-get install chromium`; --chromium points to another). The demo is started on 127.0.0.1 and stopped after;
the browser runs with a fresh profile and without background networking. Exit status 0 when the page produced valid
audio.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
VOICE = ROOT / "modeling_ditar" / "default" / "default_voice"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def wait_for(url: str, server: subprocess.Popen, seconds: float = 180) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if server.poll() is not None:
            raise SystemExit(f"the demo exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the demo did not answer at {url} within {seconds:.0f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--model", help="passed to app.py --model")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--text", default="Hello from the browser. This voice was cloned from an upload.")
    parser.add_argument("--screenshot", default="docs/figures/demo.png")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the synthesis")
    args = parser.parse_args(argv)

    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{args.port}/"
    command = [sys.executable, str(ROOT / "app.py"), "--port", str(args.port)]
    if args.model:
        command += ["--model", args.model]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(command, env=env)
    try:
        wait_for(url, server)
        with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=args.chromium,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 900},
            )
            page = browser.new_page()
            page.goto(url, wait_until="networkidle")
            page.get_by_label("Text to speak").fill(args.text)
            page.locator("input[type=file]").first.set_input_files(str(VOICE / "prompt.wav"))
            page.get_by_label("Transcript of the voice recording").fill((VOICE / "prompt.txt").read_text().strip())
            page.wait_for_timeout(1000)  # the upload lands in the audio component
            started = time.perf_counter()
            page.get_by_role("button", name="Speak").click()
            try:
                page.locator("#status").get_by_text("s of speech").wait_for(timeout=args.timeout * 1000)
            except PlaywrightTimeout:
                failed = Path(args.screenshot).with_suffix(".failed.png")
                page.screenshot(path=str(failed), full_page=True)
                raise SystemExit(f"no audio after {args.timeout:g} s; the page (screenshot: {failed}) says: "
                                 + " ".join(page.inner_text("body").split())[-800:]) from None  # fmt: skip
            seconds = time.perf_counter() - started
            status = page.locator("#status").inner_text()
            # the result's download button: the file the page offers
            link = page.locator("#speech a[download]").first
            link.wait_for(state="attached", timeout=30_000)
            data = page.request.get(link.get_attribute("href")).body()
            audio, rate = sf.read(io.BytesIO(data), dtype="float32")
            page.wait_for_timeout(500)
            Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.screenshot, full_page=True)
            browser.close()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    ok = audio.ndim == 1 and len(audio) > 0 and bool(np.isfinite(audio).all()) and float(np.abs(audio).max()) > 0
    print(f"status: {status!r}; {len(audio) / rate:.2f} s of audio at {rate} Hz in {seconds:.1f} s; screenshot: "
          f"{args.screenshot}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
