import os

# Tests never touch the network: everything is built from tiny configs or written to tmp folders.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny test models run fastest on one thread (and do not fight other jobs on a 2-core machine).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def single_thread():
    """Every test starts on one intra-op thread (with 2 threads on a loaded 2-core box every op waits for a busy core:
    measured 2.7 s vs 0.015 s per 4-patch pipeline call), and a test that changes the count does not leak it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def phonemes():
    """The English phonemizing text front end (espeak-ng from the `espeakng-loader` wheel); skips where none can run."""
    pytest.importorskip("phonemizer")
    from modeling_ditar import DiTARTextFrontend, build_ditar_tokenizer

    frontend = DiTARTextFrontend(build_ditar_tokenizer(phonemize=True))
    try:
        frontend.text_to_symbols("Hello.")
    except (ImportError, ValueError) as err:  # no espeak-ng library reachable
        pytest.skip(f"espeak-ng unavailable: {err}")
    return frontend
