import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the hub (adapters and hub ids are tested with fakes)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory):
    from unigrpo.models import init_tiny

    return init_tiny(tmp_path_factory.mktemp("micro") / "model", preset="micro", seed=0)
