"""Why a kept `results.json` of examples/evaluate.py is not what the same evaluation would make now (the shell scripts
that rerun evaluations reuse finished ones only when this prints nothing).

    python examples/research/stale_results.py RESULTS CASES PIPELINE ROWS MAX_CASES

PIPELINE and MAX_CASES may be empty strings (the embedded default; all cases). Prints the differences, `; `-joined, on
one line: another cases file, --max-cases, --pipeline or --rows than those given now, or (when those match) other model
weights than the pipeline folder holds now. Prints an empty line when the kept results still hold."""

import hashlib
import json
import os
import sys


def where(path: str | None, cwd: str = "") -> str | None:
    return os.path.realpath(os.path.join(cwd, path)) if path else None


def differences(results: str, cases: str, pipeline: str, rows: str, max_cases: str) -> list[str]:
    try:
        with open(results) as f:
            meta = json.load(f).get("meta") or {}
    except (OSError, ValueError, AttributeError) as error:
        return [f"a file that cannot be read ({error})"]
    settings = meta.get("settings") or {}
    why = []
    with open(cases, "rb") as f:
        if meta.get("cases_sha256") != hashlib.sha256(f.read()).hexdigest():
            why.append(f"another cases file ({meta.get('cases_file')}) than {cases} now")
    if settings.get("max_cases") != (int(max_cases) if max_cases else None):
        why.append(f"--max-cases {settings.get('max_cases')} (now {max_cases or 'None'})")
    if where(settings.get("pipeline"), meta.get("cwd", "")) != where(pipeline):
        why.append(f"--pipeline {settings.get('pipeline')} (now {pipeline or 'None'})")
    if settings.get("rows") != rows:
        why.append(f"--rows {settings.get('rows')} (now {rows})")
    if not why and meta.get("model_weights_sha256"):  # the same folder, saved again since
        from modeling_ditar.hub_utils import EMBEDDED_DEFAULT, model_weights_fingerprint

        now = model_weights_fingerprint(pipeline or EMBEDDED_DEFAULT) or {}
        if now.get("model_weights_sha256") != meta["model_weights_sha256"]:
            why.append(f"other model weights than {pipeline or EMBEDDED_DEFAULT} has now")
    return why


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    print("; ".join(differences(*sys.argv[1:])))
