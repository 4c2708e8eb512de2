import pytest

from googlenet.checkpoint import load_checkpoint
from googlenet.config import compose_config
from googlenet.trainer import train
from helpers import run_script


def test_inception_v2_runs_on_the_sample_set(tmp_path, sample_root):
    result = run_script("train.py", "model=inception_v2", "data=sample", f"data.root={sample_root}",
                        "trainer.limit_train_batches=2", "trainer.epochs=1", "trainer.limit_val_batches=1",
                        f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert "epoch 1/1" in result.stdout


@pytest.mark.slow
def test_sample_demo_learns_well_above_chance(tmp_path, sample_root):
    cfg = compose_config("train", ["data=sample", f"data.root={sample_root}", "data.crop_size=64",
                                   "data.eval_resize=73", "trainer.epochs=4", "trainer.progress=false",
                                   f"hydra.run.dir={tmp_path / 'run'}"])
    assert train(cfg).exit_code == 0
    metrics = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["metrics"]
    assert metrics["val_top1"] > 25.0  # chance is 10%
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
