import pytest

from googlenet.checkpoint import load_checkpoint
from googlenet.cli.config import compose_config
from googlenet.training.trainer import train


def test_inception_v2_runs_on_the_sample_set(tmp_path, sample_root, capsys):
    result = train(compose_config("train", ["model=inception_v2", "data=sample", f"data.root={sample_root}",
                                            "trainer.limit_train_batches=2", "trainer.epochs=1",
                                            "trainer.limit_val_batches=1", f"hydra.run.dir={tmp_path / 'run'}"]))
    assert result.exit_code == 0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert "epoch 1/1" in capsys.readouterr().out


@pytest.mark.slow
def test_sample_demo_learns_well_above_chance(sample_checkpoint):
    metrics = load_checkpoint(sample_checkpoint / "last.pt")["metrics"]
    assert metrics["val_top1"] > 25.0  # chance is 10%
    assert (sample_checkpoint / "best.pt").is_file()
