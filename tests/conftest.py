import pytest

from helpers import make_folder


@pytest.fixture
def tiny_folder(tmp_path):
    """3 classes x 4 images per split, 80x60 JPEGs."""
    return make_folder(tmp_path / "ds")


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """The real sample set, generated once per test session into a temporary cache."""
    from data.sample import ensure_sample_data
    return ensure_sample_data(tmp_path_factory.mktemp("cache") / "sample")


@pytest.fixture(scope="session")
def sample_checkpoint(sample_root, tmp_path_factory):
    """GoogLeNet trained for 4 epochs on the sample set at 64 px: the demo in small, and a start for fine-tuning."""
    from googlenet.config import compose_config
    from googlenet.trainer import train
    run_dir = tmp_path_factory.mktemp("sample_run")
    cfg = compose_config("train", ["data=sample", f"data.root={sample_root}", "data.crop_size=64",
                                   "data.eval_resize=73", "trainer.epochs=4", "trainer.progress=false",
                                   f"hydra.run.dir={run_dir}"])
    assert train(cfg).exit_code == 0
    return run_dir / "checkpoints"
