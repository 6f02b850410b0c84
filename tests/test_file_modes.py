"""Saved weight files are readable by whoever may read the rest of the folder.

safetensors (from 0.8) writes through a temporary file created with mode 0600 and renames it into place, so a weight
file came out readable by its owner alone whatever the umask, while the configs next to it were 0644: a pipeline saved
by one user, or in a container image built as root, could not be loaded by another user.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import torch
from pipeline_helpers import get_dummy_pipeline
from safetensors.torch import save_file

from modeling_ditar.hub_utils import make_saved_weights_readable, weight_file_inodes
from modeling_ditar.lora import default_lora_config

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


def test_a_saved_pipeline_model_and_adapter_have_no_private_files(tmp_path, umask_022):
    pipe = get_dummy_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    saved = modes(tmp_path / "pipe")
    assert "model/model.safetensors" in saved and set(saved.values()) == {0o644}, saved

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    save_file({"x": torch.zeros(1)}, str(model_dir / "mine.safetensors"))  # the user's own, private: left so
    os.chmod(model_dir / "mine.safetensors", 0o600)
    pipe.model.save_pretrained(model_dir)
    assert modes(model_dir)["model.safetensors"] == 0o644 and modes(model_dir)["mine.safetensors"] == 0o600

    pipe.create_voice().save_pretrained(tmp_path / "voice")  # the default voice as a voice file
    assert set(modes(tmp_path / "voice").values()) == {0o644}

    pipe.model.add_adapter(default_lora_config(rank=2))
    pipe.model.save_adapter(tmp_path / "adapter")
    assert set(modes(tmp_path / "adapter").values()) == {0o644}


def test_only_private_weight_files_the_save_wrote_are_opened(tmp_path, umask_022):
    for name in ("old.safetensors", "new.safetensors", "kept.safetensors"):
        save_file({"x": torch.zeros(1)}, str(tmp_path / name))
    os.chmod(tmp_path / "old.safetensors", 0o600)
    os.chmod(tmp_path / "kept.safetensors", 0o640)  # a mode someone chose
    earlier = weight_file_inodes(tmp_path)
    save_file({"x": torch.ones(1)}, str(tmp_path / "new.safetensors"))  # written again: a new, private file
    os.chmod(tmp_path / "new.safetensors", 0o600)
    save_file({"x": torch.ones(1)}, str(tmp_path / "kept.safetensors"))
    os.chmod(tmp_path / "kept.safetensors", 0o640)
    make_saved_weights_readable(tmp_path, earlier)
    assert modes(tmp_path) == {"old.safetensors": 0o600, "new.safetensors": 0o644, "kept.safetensors": 0o640}
    os.umask(0o077)  # a umask that wants private files: nothing to open
    save_file({"x": torch.ones(1)}, str(tmp_path / "new.safetensors"))
    os.chmod(tmp_path / "new.safetensors", 0o600)
    make_saved_weights_readable(tmp_path)
    assert modes(tmp_path)["new.safetensors"] == 0o600


def test_a_conversion_writes_readable_weights(tmp_path, umask_022):
    sys.path.insert(0, str(ROOT / "conversion"))
    from _common import staged_output

    with staged_output(tmp_path / "out") as tmp:
        save_file({"x": torch.zeros(1)}, str(tmp / "model.safetensors"))
        os.chmod(tmp / "model.safetensors", 0o600)  # as safetensors 0.8 writes it
    assert modes(tmp_path / "out") == {"model.safetensors": 0o644}
