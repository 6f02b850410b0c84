import os

# Tests never touch the network: everything is built from tiny configs or written to tmp folders.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

# Tiny test models run fastest on one thread (and do not fight other jobs on a 2-core machine).
torch.set_num_threads(1)
