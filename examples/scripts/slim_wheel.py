#!/usr/bin/env python
"""Repack a wheel without the files a GPU run never imports, so that the offline bundle fits the 64 MiB a device
machine receives (examples/scripts/prepare_device_bundle.sh).

    python examples/scripts/slim_wheel.py .whl/transformers-5.24.0-py3-none-any.whl .whl \\
        --remove 'transformers/models/*/*' --keep 'transformers/models/auto/*' --keep 'transformers/models/qwen2/*'

A file goes when it matches a `--remove` pattern and no `--keep` pattern (fnmatch on its path inside the wheel; `*`
also matches `/`). RECORD loses the removed files' lines, and `<name>.dist-info/SLIM.json` (listed in RECORD) says what
was removed, so an installed slim package can be told apart from a full one. The wheel keeps its file name, so pip
installs it like the original. Writes to a temporary file first: a failed run leaves the input wheel as it was.
"""

from __future__ import annotations

import argparse
import base64
import csv
import fnmatch
import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def slim_wheel(wheel: str | os.PathLike, out_dir: str | os.PathLike, remove: list[str], keep: list[str]) -> dict:
    """Write `out_dir/<same name>` without the files that match `remove` and not `keep`; returns sizes and counts."""
    wheel, out_dir = Path(wheel), Path(out_dir)
    if wheel.suffix != ".whl" or not wheel.is_file():
        raise ValueError(f"{wheel} is not a wheel file")
    if not remove:
        raise ValueError("give at least one --remove pattern")
    before = wheel.stat().st_size
    with zipfile.ZipFile(wheel) as src:
        infos = src.infolist()
        record_name = next((i.filename for i in infos if i.filename.endswith(".dist-info/RECORD")), None)
        if record_name is None:
            raise ValueError(f"{wheel} has no .dist-info/RECORD")

        def dropped(name: str) -> bool:
            return any(fnmatch.fnmatch(name, p) for p in remove) and not any(fnmatch.fnmatch(name, p) for p in keep)

        gone = {i.filename for i in infos if i.filename != record_name and dropped(i.filename)}
        if not gone:
            raise ValueError(f"the --remove patterns {remove} match nothing in {wheel.name}")
        note_name = record_name.rsplit("/", 1)[0] + "/SLIM.json"
        note = json.dumps({"removed": remove, "kept": keep, "removed_files": len(gone)}, indent=1).encode()
        rows = [r for r in csv.reader(io.StringIO(src.read(record_name).decode())) if r and r[0] not in gone]
        rows.insert(-1, [note_name, _record_hash(note), str(len(note))])  # RECORD's own line stays last
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows(rows)
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".whl", dir=out_dir)
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
                for info in infos:
                    if info.filename in gone or info.filename == record_name:
                        continue
                    dst.writestr(info, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
                dst.writestr(note_name, note)
                dst.writestr(record_name, record.getvalue())
            os.replace(tmp, out_dir / wheel.name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return {
        "wheel": wheel.name,
        "removed_files": len(gone),
        "bytes_before": before,
        "bytes_after": (out_dir / wheel.name).stat().st_size,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wheel")
    p.add_argument("out_dir", help="folder of the slim wheel (the input's folder replaces the input)")
    p.add_argument("--remove", action="append", default=[], help="fnmatch pattern of files to drop (repeatable)")
    p.add_argument("--keep", action="append", default=[], help="fnmatch pattern of files to keep anyway (repeatable)")
    args = p.parse_args(argv)
    out = slim_wheel(args.wheel, args.out_dir, args.remove, args.keep)
    print(
        f"{out['wheel']}: {out['bytes_before'] / 2**20:.2f} -> {out['bytes_after'] / 2**20:.2f} MiB "
        f"({out['removed_files']} files removed)"
    )
    return out


if __name__ == "__main__":
    main()
