"""The bad-input suite: every case of `bad_input_cases.CASES` gives its named error or its documented result.

`python -m pytest tests/test_bad_inputs.py -q -rA` lists every case; the session fixture collects the outcomes and the
end of the run prints them as a table (the same table `examples/research/bad_inputs_table.py` writes to docs/).
"""

from __future__ import annotations

import pytest
from bad_input_cases import CASES, Context, markdown_table, run_case


@pytest.fixture(scope="session")
def bad_input_context(tmp_path_factory):
    return Context(tmp_path_factory.mktemp("bad-inputs"))


@pytest.fixture(scope="session")
def bad_input_outcomes(request):
    """Outcome of every case run in this session, printed as a table at the end."""
    outcomes: list = []
    yield outcomes
    if outcomes:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            passed = sum(ok for _, ok, _ in outcomes)
            reporter.write_line(f"\nbad-input cases: {passed} of {len(outcomes)} give their named error or result")
            reporter.write_line(markdown_table(outcomes))


@pytest.mark.parametrize("item", CASES, ids=[c.id for c in CASES])
def test_bad_input(item, bad_input_context, bad_input_outcomes):
    passed, outcome = run_case(item, bad_input_context)
    bad_input_outcomes.append((item, passed, outcome))
    print(f"{item.id}: {outcome}")
    assert passed, f"{item.id} ({item.layer}, {item.input}): {outcome}"


def test_enough_cases_on_every_layer():
    layers = {c.layer for c in CASES}
    assert len(CASES) >= 80
    assert layers >= {
        "pipeline",
        "stream",
        "model forward",
        "model generate",
        "feature extractor",
        "processor",
        "text front end",
        "vocoder",
        "CLI",
        "save/load",
        "conversion",
    }
