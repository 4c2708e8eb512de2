import contextlib
import fcntl
import os
from pathlib import Path

import pytest
import torch
from helpers import make_folder

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    # pytest-xdist runs the tests in parallel: each worker (and each command it starts) gets its share of the
    # cores, rather than every worker's thread pool fighting over all of them
    threads = str(max(1, (os.cpu_count() or 1) // WORKERS))
    os.environ["OMP_NUM_THREADS"] = threads
    torch.set_num_threads(int(threads))

SAMPLE_FIXTURE = "sample_checkpoint"
# Files of end-to-end runs (several processes each): started early, so that no worker is left with one at the end.
LONG_FIRST = ("test_slurm.py", "test_distributed.py", "test_predict_export.py", "test_sweeps.py", "test_signals.py",
              "test_demo.py")


def pytest_collection_modifyitems(config, items):
    """Order for parallel workers (xdist hands out the next test to whichever worker is free): one test that
    needs the trained sample checkpoint first (a worker trains it while the other starts the long files), then
    the long end-to-end files, then the other tests of that checkpoint (trained by then; some are long), and
    the short tests last, so that both workers finish together."""
    needs = [item for item in items if SAMPLE_FIXTURE in getattr(item, "fixturenames", ())]
    rest = [item for item in items if item not in needs]
    long = [item for item in rest if item.path.name in LONG_FIRST]
    items[:] = needs[:1] + long + needs[1:] + [item for item in rest if item not in long]


def pytest_xdist_node_collection_finished(node, ids):
    """The SLURM tests share one cluster, so one worker (xdist_group). pytest 9.2 made --dist loadgroup ignore
    the groups without a word (pytest-xdist#1386): two clusters started, and their jobs met at one port."""
    if (node.config.getoption("dist") == "loadgroup" and any("test_slurm.py" in i for i in ids)
            and not any(i.endswith("@slurm") for i in ids)):
        pytest.exit("pytest-xdist's --dist loadgroup does not keep the SLURM tests on one worker with this pytest "
                    "(pytest-xdist#1386): pip install -r requirements.txt (pytest<9.2)", returncode=4)


def shared_dir(tmp_path_factory) -> Path:
    """A folder all of this run's workers see (xdist gives each worker a base temp folder of its own)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def file_lock(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture
def tiny_folder(tmp_path):
    """3 classes x 4 images per split, 80x60 JPEGs."""
    return make_folder(tmp_path / "ds")


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """The real sample set, generated once per test run into a temporary cache (shared by xdist's workers:
    generation is safe against concurrent callers)."""
    from data.sample import ensure_sample_data
    return ensure_sample_data(shared_dir(tmp_path_factory) / "sample-cache" / "sample")


@pytest.fixture(scope="session")
def sample_checkpoint(sample_root, tmp_path_factory):
    """GoogLeNet trained for 4 epochs on the sample set at 56 px, validated after the last: the demo in small,
    and a start for fine-tuning (32-bit: at this size faster than bf16 autocast on a CPU).
    Trained once per test run: the first worker to need it trains it, the others read it (read-only)."""
    from googlenet.cli.config import compose_config
    from googlenet.training.trainer import train
    shared = shared_dir(tmp_path_factory)
    run_dir, done = shared / "sample_run", shared / "sample_run.done"
    with file_lock(shared / "sample_run.lock"):
        if not done.exists():
            cfg = compose_config("train", ["data=sample", f"data.root={sample_root}", "data.crop_size=56",
                                           "data.eval_resize=64", "trainer.epochs=4", "trainer.val_every=4",
                                           "runtime.precision=32", "trainer.progress=false",
                                           "trainer.overwrite=true", f"hydra.run.dir={run_dir}"])
            assert train(cfg).exit_code == 0
            done.write_text("trained\n")
    return run_dir / "checkpoints"
