import pytest

from googlenet.checkpoint import load_checkpoint
from helpers import run_script


def test_inception_v2_runs_on_the_sample_set(tmp_path, sample_root):
    result = run_script("train.py", "model=inception_v2", "data=sample", f"data.root={sample_root}",
                        "trainer.limit_train_batches=2", "trainer.epochs=1", "trainer.limit_val_batches=1",
                        f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert "epoch 1/1" in result.stdout


@pytest.mark.slow
def test_sample_demo_learns_well_above_chance(sample_checkpoint):
    metrics = load_checkpoint(sample_checkpoint / "last.pt")["metrics"]
    assert metrics["val_top1"] > 25.0  # chance is 10%
    assert (sample_checkpoint / "best.pt").is_file()
