import pytest
from omegaconf import OmegaConf

from googlenet.training.schedule import LRSchedule


def _schedule(**kw):
    return OmegaConf.create({"interval": "step", "warmup_epochs": 0, "warmup_start": 0.01, **kw})


def test_schedules_produce_the_expected_lr_sequences():
    paper = LRSchedule(_schedule(name="step", interval="epoch", warmup_epochs=0, step_epochs=8, gamma=0.96),
                       1.0, steps_per_epoch=10, epochs=40)
    assert [paper(e * 10) for e in (0, 7, 8, 15, 16, 24)] == pytest.approx([1, 1, 0.96, 0.96, 0.96 ** 2, 0.96 ** 3])
    assert paper(79) == 1.0 and paper(80) == pytest.approx(0.96)  # changes only at the epoch boundary
    per_step = LRSchedule(_schedule(name="step", interval="step", warmup_epochs=0, step_epochs=0.5, gamma=0.5),
                          1.0, steps_per_epoch=4, epochs=2)
    assert [per_step(s) for s in range(5)] == pytest.approx([1, 1, 0.5, 0.5, 0.25])
    cosine = LRSchedule(_schedule(name="cosine", warmup_epochs=1, warmup_start=0.0, min_lr=0.0), 2.0,
                        steps_per_epoch=4, epochs=3)
    assert [cosine(s) for s in range(4)] == pytest.approx([0, 0.5, 1.0, 1.5])
    assert cosine(4) == pytest.approx(2.0)
    assert cosine(8) == pytest.approx(1.0)  # half way through the 8 post-warmup steps
    assert cosine(12) == pytest.approx(0.0, abs=1e-12)
    multi = LRSchedule(_schedule(name="multistep", interval="epoch", warmup_epochs=0, milestones=[2, 5],
                                 gamma=0.1), 1.0, steps_per_epoch=3, epochs=6)
    assert [multi(e * 3) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01])


def test_the_papers_recipe_warms_up_as_its_global_batch_grows():
    from googlenet.cli.config import compose_config
    from googlenet.training.schedule import warmup_epochs
    assert [warmup_epochs("auto", b) for b in (32, 128, 256, 512, 1024, 8192)] == [0, 0, 0, 2.5, 5, 5]
    assert warmup_epochs(3, 8192) == 3.0  # a number is taken as given
    paper = compose_config("train", ["experiment=googlenet_paper"])
    assert paper.schedule.warmup_epochs == "auto"
    # 8 GPUs x 128: lr 0.32 after 5 epochs of linear warmup, from warmup_start x 0.32
    steps = 100
    schedule = LRSchedule(paper.schedule, 0.32, steps, paper.trainer.epochs, global_batch=1024)
    assert schedule.warmup == 5 * steps and schedule(0) == pytest.approx(0.32 * paper.schedule.warmup_start)
    assert schedule(5 * steps) == pytest.approx(0.32)
    with pytest.raises(Exception, match="schedule.warmup_epochs"):
        compose_config("train", ["experiment=googlenet_paper", "schedule.warmup_epochs=soon"])
