"""Load test of `ditar serve` on loopback, bounded in time: sequential requests, then N concurrent clients.

    python examples/load_test.py --spawn --clients 8 --seconds 60          # starts `ditar serve` itself, then stops it
    python examples/load_test.py --url http://127.0.0.1:8000 --clients 4 --seconds 30

Each phase sends requests for T seconds (the sequential phase: one client; the concurrent one: N clients, each sending
its next request when the last is answered), then waits for the answers still open. Every answer must be 200 with a
decodable WAV at the server's rate holding finite, non-silent audio; anything else counts as lost or invalid, and the
exit status is 1 if any was. Prints (and with --json writes) requests, p50/p95 latency, requests and seconds of audio
per second, and the server's batching counters. Traffic goes to the given URL only (127.0.0.1 by default). With
DITAR_API_KEY set, every request sends it as the server's API key (a spawned server inherits it and requires it).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back when you get this message.",
    "It is going to rain later this afternoon.",
    "She sells sea shells by the sea shore.",
    "We will meet at the station at half past nine.",
    "A cup of tea would be lovely, thank you.",
    "The museum opens its new wing next week.",
    "Turn left at the bakery and walk two blocks.",
]


def auth_headers() -> dict:
    """`Authorization: Bearer $DITAR_API_KEY` when that variable is set: the key a server started with it requires
    (a server this script spawns inherits the environment, so it requires the same key)."""
    key = os.environ.get("DITAR_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def one_request(client: httpx.AsyncClient, url: str, index: int, rate: int, voice: str, timeout: float) -> dict:
    # wav, not the server's default mp3: the model's samples, with no encoder's time in the latencies
    text = TEXTS[index % len(TEXTS)]
    body = {"model": "ditar", "input": text, "voice": voice, "seed": index, "response_format": "wav"}
    start = time.perf_counter()
    try:
        response = await client.post(f"{url}/v1/audio/speech", json=body, timeout=timeout)
    except httpx.HTTPError as err:
        return {"ok": False, "error": f"{type(err).__name__}: {err}", "latency": time.perf_counter() - start}
    latency = time.perf_counter() - start
    if response.status_code != 200:
        return {"ok": False, "error": f"HTTP {response.status_code}: {response.text[:200]}", "latency": latency}
    try:
        audio, got_rate = sf.read(io.BytesIO(response.content), dtype="float32")
    except Exception as err:
        return {"ok": False, "error": f"not audio: {err}", "latency": latency}
    problems = []
    if got_rate != rate:
        problems.append(f"rate {got_rate} != {rate}")
    if audio.ndim != 1 or len(audio) == 0 or not np.isfinite(audio).all() or np.abs(audio).max() == 0:
        problems.append("empty, multichannel, non-finite or silent audio")
    if problems:
        return {"ok": False, "error": "; ".join(problems), "latency": latency}
    return {
        "ok": True,
        "latency": latency,
        "audio_seconds": len(audio) / rate,
        "batch": response.headers.get("x-batch-size"),
    }


async def phase(url: str, clients: int, seconds: float, rate: int, voice: str, timeout: float, first: int) -> dict:
    """`clients` loops sending requests until `seconds` have passed; then the open ones are awaited."""
    results: list[dict] = []
    sent = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client):
        nonlocal sent
        while time.perf_counter() < stop_at:
            index = first + sent
            sent += 1
            results.append(await one_request(client, url, index, rate, voice, timeout))

    start = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, headers=auth_headers()) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    wall = time.perf_counter() - start
    good = [r for r in results if r["ok"]]
    latencies = [r["latency"] for r in good]
    audio = sum(r["audio_seconds"] for r in good)
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "sent": sent,
        "answered": len(results),
        "valid": len(good),
        "errors": [r["error"] for r in results if not r["ok"]][:10],
        "p50_s": round(percentile(latencies, 50), 3),
        "p95_s": round(percentile(latencies, 95), 3),
        "requests_per_s": round(len(good) / wall, 3),
        "audio_s_per_s": round(audio / wall, 3),
    }


def spawn_server(port: int, serve_args: list[str]) -> subprocess.Popen:
    ditar = Path(sys.executable).with_name("ditar")
    command = [str(ditar), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *serve_args]
    print("starting:", " ".join(command), file=sys.stderr)
    return subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def wait_healthy(url: str, server: subprocess.Popen | None, seconds: float = 180) -> dict:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if server is not None and server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            response = httpx.get(f"{url}/health", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"no healthy server at {url} after {seconds:.0f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default: %(default)s)")
    parser.add_argument("--spawn", action="store_true", help="start `ditar serve` on --url's port, stop it after")
    parser.add_argument(
        "--serve-args", default="", help="extra `ditar serve` options with --spawn, e.g. '--candidates 1'"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients N (default: %(default)s)")
    parser.add_argument(
        "--seconds", type=float, default=60, help="T, seconds each phase sends for (default: %(default)s)"
    )
    parser.add_argument("--voice", default="default", help="voice of every request (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300, help="client timeout per request, seconds")
    parser.add_argument("--skip-sequential", action="store_true", help="only the concurrent phase")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    host = httpx.URL(url).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error(f"--url must be a loopback address (127.0.0.1), got {host!r}")
    # a phase without clients or time sends nothing and would pass having tested nothing
    for name, value in (("clients", args.clients), ("seconds", args.seconds), ("timeout", args.timeout)):
        if not value > 0:
            parser.error(f"--{name} {value:g}: give a number above 0")
    if args.serve_args and not args.spawn:
        parser.error("--serve-args only applies with --spawn (this run would use a server it did not start)")
    if args.json and not Path(args.json).parent.is_dir():
        parser.error(f"--json {args.json}: the folder {Path(args.json).parent} does not exist")
    server = spawn_server(httpx.URL(url).port or 8000, args.serve_args.split()) if args.spawn else None
    try:
        health = wait_healthy(url, server)
        rate = int(health["sample_rate"])
        report = {"url": url, "server": {k: health[k] for k in ("model", "sample_rate", "max_batch_size", "queue")}}

        async def warm_up():
            async with httpx.AsyncClient(headers=auth_headers()) as client:
                return await one_request(client, url, 10_000, rate, args.voice, args.timeout)

        warm = asyncio.run(warm_up())
        report["warmup"] = {"sent": 1, "valid": int(warm["ok"]), "latency_s": round(warm["latency"], 3)}
        before = httpx.get(f"{url}/health").json()["stats"]
        if not args.skip_sequential:
            report["sequential"] = asyncio.run(phase(url, 1, args.seconds, rate, args.voice, args.timeout, 0))
            print("sequential:", json.dumps(report["sequential"]), file=sys.stderr)
        middle = httpx.get(f"{url}/health").json()["stats"]
        report["concurrent"] = asyncio.run(phase(url, args.clients, args.seconds, rate, args.voice, args.timeout, 0))
        after = httpx.get(f"{url}/health").json()["stats"]
        batches = after["batches"] - middle["batches"]
        report["concurrent"]["batches"] = batches
        report["concurrent"]["mean_batch"] = round(
            (after["batched_rows"] - middle["batched_rows"]) / max(1, batches), 2
        )
        report["concurrent"]["largest_batch"] = after["largest_batch"]
        report["stats_before"] = before
        if "sequential" in report and report["sequential"]["requests_per_s"] > 0:
            report["speedup"] = round(
                report["concurrent"]["requests_per_s"] / report["sequential"]["requests_per_s"], 2
            )
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                server.kill()
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    lost = [
        p for p in ("warmup", "sequential", "concurrent") if p in report and report[p]["valid"] != report[p]["sent"]
    ]
    if lost:
        print(f"FAILED: lost or invalid responses in {', '.join(lost)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
