#!/usr/bin/env bash
# What a call to the GPU machine would carry, in MiB, and whether it fits its 64 MiB limit: the tracked files, the
# untracked files git does not ignore, a shared/ folder at the root if there is one, and the named carried paths.
#   bash examples/scripts/device_payload_size.sh              # carried: .espeak .whl (what train_on_gpu.sh needs)
#   bash examples/scripts/device_payload_size.sh .espeak .whl data/corpus
# Exits 1 above the limit (LIMIT_MIB, default 64), 2 when a named carried path does not exist.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$#" -gt 0 ] || set -- .espeak .whl
git ls-files -z --cached --others --exclude-standard | python3 -c '
import os, sys
limit = float(os.environ.get("LIMIT_MIB", "64")) * 2**20
carried = sys.argv[1:]
names = [n for n in sys.stdin.buffer.read().decode().split("\0") if n]
def size(path):  # a link travels as a link
    return os.lstat(path).st_size if os.path.lexists(path) else 0
def tree(root):
    if os.path.islink(root) or os.path.isfile(root):
        return size(root)
    return sum(size(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)
inside = lambda name, roots: any(name == r or name.startswith(r.rstrip("/") + "/") for r in roots)
rows, missing = [], [c for c in carried if not os.path.lexists(c)]
repo = [n for n in names if os.path.lexists(n) and not inside(n, carried)]  # a carried path replaces its copy
sizes = {n: size(n) for n in repo}
top = {}
for n, s in sizes.items():
    top[n.split("/")[0]] = top.get(n.split("/")[0], 0) + s
rows.append(("working tree (tracked + untracked, not ignored)", sum(sizes.values())))
if os.path.isdir("shared") and not inside("shared", carried):
    extra = tree("shared") - sum(s for n, s in sizes.items() if inside(n, ["shared"]))
    rows.append(("shared/ (ignored part)", max(extra, 0)))
for c in carried:
    if os.path.lexists(c):
        rows.append((f"carried {c}", tree(c)))
total = sum(s for _, s in rows)
for label, s in rows:
    print(f"{s / 2**20:9.2f} MiB  {label}")
big = sorted(top.items(), key=lambda kv: -kv[1])[:6]
print("           largest in the working tree: " + ", ".join(f"{k} {v / 2**20:.2f}" for k, v in big))
print(f"{total / 2**20:9.2f} MiB  total of {limit / 2**20:.0f} MiB ({(limit - total) / 2**20:.2f} MiB left)")
for c in missing:
    print(f"carried path {c} does not exist (prepare_device_bundle.sh makes .espeak and .whl)", file=sys.stderr)
if total > limit:
    print(f"TOO BIG: {total / 2**20:.2f} MiB > {limit / 2**20:.0f} MiB; a device call would be refused", file=sys.stderr)
    sys.exit(1)
sys.exit(2 if missing else 0)
' "$@"
