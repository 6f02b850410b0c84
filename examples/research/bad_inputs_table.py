"""Which bad inputs give a named error or a documented result? Runs the case list of the bad-input suite
(tests/bad_input_cases.py, the table tests/test_bad_inputs.py checks) and prints it as Markdown: case id, layer,
input, outcome (the error raised, or the result checked) and whether the case holds. Run from the repository root:

    python examples/research/bad_inputs_table.py > docs/research/bad_inputs.md  # then add the page's header

The exit status is 1 when a case does not hold.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TESTS = Path(__file__).resolve().parents[2] / "tests"
sys.path.insert(0, str(TESTS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    import torch
    from bad_input_cases import markdown_table, run_all
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(1)
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    results = run_all()
    held = sum(ok for _, ok, _ in results)
    errors = sum(1 for item, ok, _ in results if ok and item.raises is not None)
    layers = Counter(item.layer for item, _, _ in results)
    print(
        f"{len(results)} cases on {len(layers)} layers ("
        + ", ".join(f"{name} {count}" for name, count in layers.items())
        + f"): {held} hold ({errors} named errors, {held - errors} documented results), {len(results) - held} do not."
    )
    print()
    print(markdown_table(results))
    return 0 if held == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
