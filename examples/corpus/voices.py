"""Random espeak-ng voices ("speakers") for a synthetic multi-speaker TTS corpus.

An espeak-ng *variant* is a small text file (pitch, formant, breath, roughness, ... lines) that modifies a base
language voice.  Writing random variant files gives an unlimited number of distinct speakers:

    espeak-ng --path=DIR -v en-us+v00012 -s 170 -w out.wav "Hello there."

where ``DIR/espeak-ng-data/voices/!v/v00012`` is the variant file.

Pitfalls of espeak-ng 1.51:

* It caps its visible voice list at 349 entries (shared/research/proto.md section 6).  Past the cap a variant is
  either silently replaced by the default voice (byte-identical audio for hundreds of variants, seen in the
  prototype) or rejected ("Warning: maximum number 349 ... reached", "voice does not exist"; seen here with 400
  variants in one dir).
* A variant name that does not exist, or any variant on the base "en-gb" ("en-gb+NAME"), is *silently ignored*:
  the audio is byte-identical to the plain base voice.  Use "en+NAME" for British English.

``VoiceBank`` therefore writes at most ``MAX_VARIANTS_PER_DIR`` variants per private data dir, each dir holds only
the English language and dictionary files (no stock variants, no MBROLA voices), and the corpus builder checks with
md5s that voices differ from each other and from their plain base voice.

Stock espeak variants (``stock_eval_voices()``) are reserved for evaluation and are never used for training.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "BASE_VOICES",
    "MAX_VARIANTS_PER_DIR",
    "STOCK_SPEAKER_PREFIX",
    "Voice",
    "VoiceBank",
    "espeak_binary",
    "find_espeak_data_dir",
    "parse_variant",
    "probe_md5s",
    "random_variant",
    "stock_eval_voices",
    "synthesize",
]

#: Hard limit on custom variants per private data dir (espeak-ng's voice list caps at 349 entries).
MAX_VARIANTS_PER_DIR = 150

#: Base language voices for random speakers with their sampling weights (accent variety, all intelligible).
#: British English is "en": espeak-ng 1.51 silently IGNORES the variant in "en-gb+NAME" (same audio as plain
#: "en-gb"), while "en+NAME" works.  ``Voice.espeak_name`` rewrites "en-gb+NAME" to "en+NAME" as a safeguard.
BASE_VOICES: dict[str, float] = {
    "en-us": 0.6,
    "en": 0.1,
    "en-gb-x-rp": 0.1,
    "en-us-nyc": 0.1,
    "en-029": 0.1,
}

# Files of espeak-ng-data that are needed to speak English.
_CORE_FILES = ("phondata", "phondata-manifest", "phonindex", "phontab", "intonations", "en_dict")

#: The speaker id of a stock voice's rows is this prefix + its name (``stock_en-us+m3``): evaluation-only speakers.
STOCK_SPEAKER_PREFIX = "stock_"

_STOCK_EVAL = (
    "en-us+m3",
    "en-us+f2",
    "en+m5",
    "en-us+Andy",
    "en-gb-x-rp+m1",
    "en-us+klatt4",
    "en-us+m6",
    "en-us+steph",
    "en+f4",
    "en-us+croak",
    "en-us-nyc+m2",
    "en-029+m4",
)


def stock_eval_voices() -> list[str]:
    """Stock espeak-ng voices (``base+variant``) for *evaluation only*; never used to build training speakers.

    They use the system data dir.  A few of them are hard for ASR (Andy, f2, f4; see offline.md section 1a).
    British voices are written "en+NAME": "en-gb+NAME" silently ignores the variant in espeak-ng 1.51.
    """
    return list(_STOCK_EVAL)


def espeak_binary() -> str | None:
    """Path of the ``espeak-ng`` executable, or None."""
    return shutil.which("espeak-ng")


def find_espeak_data_dir() -> Path:
    """Locate the system ``espeak-ng-data`` directory (the one that holds ``phontab``)."""
    candidates: list[Path] = []
    if os.environ.get("ESPEAK_DATA_PATH"):
        p = Path(os.environ["ESPEAK_DATA_PATH"])
        candidates += [p, p / "espeak-ng-data"]
    exe = espeak_binary()
    if exe:
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
            # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data"
            if "Data at:" in out:
                candidates.append(Path(out.split("Data at:", 1)[1].strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += [
        Path(p)
        for p in (
            "/usr/lib/x86_64-linux-gnu/espeak-ng-data",
            "/usr/lib/aarch64-linux-gnu/espeak-ng-data",
            "/usr/share/espeak-ng-data",
            "/usr/local/share/espeak-ng-data",
            "/usr/lib/espeak-ng-data",
        )
    ]
    for c in candidates:
        if (c / "phontab").is_file() and (c / "en_dict").is_file():
            return c
    raise FileNotFoundError("could not find espeak-ng-data (install espeak-ng, or set ESPEAK_DATA_PATH)")


# --------------------------------------------------------------------------------------------------------------
# random variant files
# --------------------------------------------------------------------------------------------------------------


def random_variant(rng: random.Random, name: str = "random") -> str:
    """Text of a random espeak-ng variant file.

    Ranges are moderate so that the voice stays intelligible: a vocal-tract scale factor moves all formant
    frequencies together (plus a little per-formant jitter), pitch stays in a normal male/female register,
    breathiness/roughness/flutter are mild, and only some voices use the Klatt synthesizer.
    """
    u = rng.uniform
    female = rng.random() < 0.5
    lines = ["language variant", f"name {name}", f"gender {'female' if female else 'male'}", ""]

    if female:
        base = round(u(140, 200))
        top = base + round(u(40, 90))
        tract = u(1.02, 1.14)
    else:
        base = round(u(75, 125))
        top = base + round(u(30, 70))
        tract = u(0.92, 1.04)
    lines.append(f"pitch {base} {top}")

    # formant k freq% height% width%  (k = 0..8; 100 = unchanged)
    for k in range(9):
        freq = 100 * tract * (u(0.95, 1.05) if 1 <= k <= 5 else 1.0)
        height = u(75, 115) if k <= 5 else u(85, 110)
        width = u(80, 140) if not female else u(100, 160)
        lines.append(f"formant {k} {round(freq)} {round(height)} {round(width)}")

    if rng.random() < 0.35:  # mild breathiness on the higher formants
        amounts = [0] + sorted((round(u(0, 20)) for _ in range(7)), reverse=True)
        lines.append("breath " + " ".join(str(a) for a in amounts))
        lines.append("breathw " + " ".join(str(round(u(100, 300))) for _ in range(8)))
    lines.append(f"roughness {rng.randint(0, 4)}")
    lines.append(f"flutter {rng.randint(0, 6)}")
    lines.append(f"voicing {round(u(85, 115))}")
    lines.append(f"consonants {round(u(80, 130))} {round(u(80, 130))}")
    if rng.random() < 0.5:  # spectral tilt: 4 (frequency Hz, amplitude) points
        pts = [(600, 170), (1200, 135), (2000, 110), (3000, 110)]
        tone = []
        for f, a in pts:
            tone += [round(f * u(0.8, 1.2)), max(20, min(255, round(a * u(0.7, 1.3))))]
        lines.append("tone " + " ".join(str(t) for t in tone))
    if rng.random() < 0.15:
        lines.append(f"echo {round(u(40, 140))} {round(u(4, 14))}")
    if rng.random() < 0.15:
        lines.append(f"klatt {rng.randint(1, 4)}")
    return "\n".join(lines) + "\n"


def parse_variant(text: str) -> dict[str, list[int] | str]:
    """Parse variant file text into ``{keyword: values}`` (``formant`` becomes ``formant0`` ... ``formant8``).

    Raises ValueError on unknown keywords or malformed numbers (a light check of what espeak-ng accepts).
    """
    known_numeric = {
        "pitch",
        "breath",
        "breathw",
        "roughness",
        "flutter",
        "voicing",
        "consonants",
        "tone",
        "echo",
        "klatt",
        "stressAdd",
        "stressAmp",
        "stressLength",
        "speed",
        "words",
        "clarity",
        "intonation",
    }
    out: dict[str, list[int] | str] = {}
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        key, _, rest = line.partition(" ")
        rest = rest.strip()
        if key in ("language", "name", "gender"):
            out[key] = rest
        elif key == "formant":
            nums = [int(v) for v in rest.split()]
            if len(nums) < 4 or not 0 <= nums[0] <= 8:
                raise ValueError(f"bad formant line: {raw!r}")
            out[f"formant{nums[0]}"] = nums[1:]
        elif key in known_numeric:
            out[key] = [int(v) for v in rest.split()]
        else:
            raise ValueError(f"unknown variant keyword {key!r} in line {raw!r}")
    if out.get("language") != "variant":
        raise ValueError("variant file must start with 'language variant'")
    return out


# --------------------------------------------------------------------------------------------------------------
# voices and private data dirs
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Voice:
    """One synthetic speaker: a variant file in a private data dir, a base (accent) voice and a speaking rate."""

    name: str  # variant name, e.g. "v00012"
    base: str  # base language voice, e.g. "en-us"
    variant: str  # variant file text
    speed: int  # words per minute (speaker's habitual rate)
    path: str | None  # dir that *contains* espeak-ng-data (espeak's --path); None = system data dir

    @property
    def espeak_name(self) -> str:
        if not self.name:
            return self.base
        base = "en" if self.base == "en-gb" else self.base  # "en-gb+NAME" would silently drop the variant
        return f"{base}+{self.name}"

    @classmethod
    def stock(cls, spec: str, speed: int = 170) -> Voice:
        """A stock espeak voice such as ``"en-us+m3"`` (system data dir)."""
        base, _, variant = spec.partition("+")
        return cls(name=variant, base=base, variant=spec, speed=speed, path=None)

    def describe(self) -> str:
        """The variant text with the base voice and speed as a leading espeak comment (stock voices: their name)."""
        if self.path is None:
            return self.variant
        return f"// espeak-ng -v {self.espeak_name} -s {self.speed}\n{self.variant}"


def _make_data_dir(src: Path, dst: Path) -> Path:
    """Create ``dst/espeak-ng-data`` with only what English needs; return the voices/!v dir."""
    data = dst / "espeak-ng-data"
    if data.exists():
        shutil.rmtree(data)
    (data / "lang" / "gmw").mkdir(parents=True)
    vdir = data / "voices" / "!v"
    vdir.mkdir(parents=True)
    for f in _CORE_FILES:
        shutil.copy2(src / f, data / f)
    for f in sorted((src / "lang" / "gmw").glob("en*")):
        shutil.copy2(f, data / "lang" / "gmw" / f.name)
    return vdir


class VoiceBank:
    """``num_voices`` random speakers written into private espeak-ng data dirs under ``root``.

    Dir ``root/bank000`` holds voices 0..149, ``root/bank001`` voices 150..299, and so on.  Each dir contains only
    the English language/dictionary files, no stock variants and no MBROLA voices, so espeak-ng's 349-entry voice
    list never overflows.  The same (num_voices, seed) always gives the same voices.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        num_voices: int,
        seed: int = 0,
        *,
        per_dir: int = MAX_VARIANTS_PER_DIR,
        speed_range: tuple[int, int] = (140, 200),
        base_voices: dict[str, float] | None = None,
        prefix: str = "v",
        data_dir: str | os.PathLike | None = None,
    ):
        if not 1 <= per_dir <= MAX_VARIANTS_PER_DIR:
            raise ValueError(f"per_dir must be in 1..{MAX_VARIANTS_PER_DIR} (espeak-ng voice list limit)")
        self.root = Path(root)
        self.seed = seed
        src = Path(data_dir) if data_dir is not None else find_espeak_data_dir()
        bases = base_voices or BASE_VOICES
        rng = random.Random(f"voicebank-{seed}")
        self.voices: list[Voice] = []
        vdir = None
        for i in range(num_voices):
            if i % per_dir == 0:
                bank = self.root / f"bank{i // per_dir:03d}"
                vdir = _make_data_dir(src, bank)
            name = f"{prefix}{i:05d}"
            variant = random_variant(rng, name)
            (vdir / name).write_text(variant)
            base = rng.choices(list(bases), weights=list(bases.values()))[0]
            speed = rng.randint(*speed_range)
            self.voices.append(Voice(name=name, base=base, variant=variant, speed=speed, path=str(bank)))

    def __len__(self) -> int:
        return len(self.voices)

    def __getitem__(self, i: int) -> Voice:
        return self.voices[i]

    def __iter__(self):
        return iter(self.voices)


# --------------------------------------------------------------------------------------------------------------
# synthesis
# --------------------------------------------------------------------------------------------------------------


def synthesize(
    text: str, voice: Voice | str, out_wav: str | os.PathLike, speed: int | None = None, *, timeout: float = 60.0
) -> None:
    """Speak ``text`` with ``voice`` into ``out_wav`` (espeak-ng writes 22050 Hz mono PCM_16).

    ``voice`` is a :class:`Voice` or a stock voice name such as ``"en-us+m3"``; ``speed`` (words per minute)
    defaults to the voice's own rate.  The text goes through stdin, so it cannot be mistaken for an option.
    """
    if isinstance(voice, str):
        voice = Voice.stock(voice)
    exe = espeak_binary()
    if exe is None:
        raise FileNotFoundError("espeak-ng is not installed (apt-get install espeak-ng)")
    cmd = [exe]
    if voice.path is not None:
        cmd.append(f"--path={voice.path}")
    cmd += [
        "-v",
        voice.espeak_name,
        "-s",
        str(int(speed if speed is not None else voice.speed)),
        "-w",
        str(out_wav),
        "--stdin",
    ]
    res = subprocess.run(cmd, input=text.encode(), capture_output=True, timeout=timeout)
    err = res.stderr.decode(errors="replace").strip()
    if res.returncode != 0 or not os.path.exists(out_wav) or os.path.getsize(out_wav) <= 44:
        raise RuntimeError(f"espeak-ng failed (rc={res.returncode}) for {voice.espeak_name}: {err}")
    if err:  # e.g. "Warning: maximum number 349 of ... reached" (fallback to the default voice)
        raise RuntimeError(f"espeak-ng warned for {voice.espeak_name}: {err}")


def probe_md5s(voices: Sequence[Voice | str], text: str, workdir: str | os.PathLike) -> list[str]:
    """md5 of the audio of ``text`` spoken by each voice at one fixed speed (identical md5 = same voice)."""
    import hashlib

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out = []
    for i, v in enumerate(voices):
        wav = workdir / f"probe{i}.wav"
        synthesize(text, v, wav, speed=170)
        out.append(hashlib.md5(wav.read_bytes()).hexdigest())
        wav.unlink()
    return out
