"""Starting from pretrained weights: torchvision state dicts and train.py checkpoints, frozen features."""
import pytest
import torch
import torchvision
from helpers import make_folder, tiny_overrides

from common.errors import UserError
from data.sample import generate
from googlenet.checkpoint import load_checkpoint
from googlenet.cli.config import compose_config
from googlenet.training.finetune import is_head
from googlenet.training.trainer import Trainer, train


def _five_classes(tmp_path):
    return make_folder(tmp_path / "five", classes=tuple(f"kind{i}" for i in range(5)), per_class=2)


def _folder_run(root, run_dir, *extra):
    overrides = [o for o in tiny_overrides(root, run_dir, "trainer.epochs=1", *extra) if "num_classes" not in o]
    return compose_config("train", ["data=folder", *overrides])


def test_torchvision_weights_start_a_five_class_run(tmp_path):
    source = torchvision.models.googlenet(init_weights=True, aux_logits=True).state_dict()
    path = tmp_path / "googlenet.pth"
    torch.save(source, path)
    trainer = Trainer(_folder_run(_five_classes(tmp_path), tmp_path / "run", "model=inception_v1_torchvision",
                                  f"finetune.weights={path}"))
    state = trainer.model.state_dict()
    heads = [k for k in state if is_head(k) and source[k].shape != state[k].shape]
    assert sorted(heads) == ["aux1.fc2.bias", "aux1.fc2.weight", "aux2.fc2.bias", "aux2.fc2.weight", "fc.bias",
                             "fc.weight"]
    assert all(torch.equal(state[k], source[k]) for k in state if k not in heads)  # the rest, as given
    assert state["fc.weight"].shape == (5, 1024) and state["aux1.fc2.weight"].shape == (5, 1024)
    assert trainer.state.step == 0
    trainer.fit()
    trainer.close()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 5
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"started from {path} (state dict): loaded" in log and "re-initialised (new class count): aux1.fc2" in log


def test_weights_that_do_not_fit_are_a_one_line_error_listing_the_keys(tmp_path):
    path = tmp_path / "googlenet.pth"
    torch.save(torchvision.models.googlenet(init_weights=True).state_dict(), path)
    with pytest.raises(UserError, match=r"does not fit this model: .*inception3a.branch3.1.conv.weight \(32, 16, 3, 3\) "
                                        r"vs \(32, 16, 5, 5\)"):
        Trainer(_folder_run(_five_classes(tmp_path), tmp_path / "run", f"finetune.weights={path}"))


def test_frozen_features_do_not_change(tmp_path, sample_checkpoint):
    trainer = Trainer(_folder_run(_five_classes(tmp_path), tmp_path / "run", "model=inception_v1",
                                  f"finetune.weights={sample_checkpoint / 'last.pt'}", "finetune.freeze=features",
                                  "data.crop_size=56", "data.eval_resize=64", "data.batch_size=4"))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    source = load_checkpoint(sample_checkpoint / "last.pt")["model"]
    assert all(torch.equal(before[k], source[k]) for k in before if not is_head(k))  # loaded at step 0
    assert before["fc.weight"].shape == (5, 1024) and before["aux2.fc2.weight"].shape == (5, 1024)
    trainer.fit()
    trainer.close()
    after = trainer.model.state_dict()
    frozen = [k for k in after if not is_head(k)]
    assert all(torch.equal(before[k], after[k]) for k in frozen)  # weights and batch-norm statistics alike
    assert not torch.equal(before["fc.weight"], after["fc.weight"])  # the heads trained


def test_fine_tuning_learns_faster_than_training_from_scratch(tmp_path, sample_checkpoint):
    # held-out images (drawn with another seed) of the sample's classes; the same 10 steps for both runs
    held_out = generate(tmp_path / "held_out", seed=123, counts={"train": 8, "val": 10})
    budget = ["data.crop_size=56", "data.eval_resize=64", "data.batch_size=8", "trainer.epochs=1",
              "trainer.log_every=5"]
    scratch = train(_folder_run(held_out, tmp_path / "scratch", *budget))
    tuned = train(_folder_run(held_out, tmp_path / "tuned", *budget, f"finetune.weights={sample_checkpoint / 'last.pt'}"))
    assert tuned.metrics["val_top1"] > scratch.metrics["val_top1"] + 8, (tuned.metrics, scratch.metrics)
