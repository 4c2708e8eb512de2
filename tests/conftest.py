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
