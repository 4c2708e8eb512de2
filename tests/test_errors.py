"""Bad input that used to end in a traceback: each is one line naming the problem and the fix."""
import pytest
import torch
from helpers import make_folder, tiny_overrides

from common.errors import UserError
from googlenet.checkpoint import FORMAT
from googlenet.cli.config import compose_config
from googlenet.cli.precheck import check_command_line
from googlenet.distributed import detect_env
from googlenet.evaluation import run_evaluation
from googlenet.training.trainer import Trainer, train


def _trained(tmp_path):
    data = make_folder(tmp_path / "ds")
    assert train(compose_config("train", tiny_overrides(data, tmp_path / "run", "trainer.epochs=1"))).exit_code == 0
    return data, tmp_path / "run" / "checkpoints" / "last.pt"


def _evaluate(ckpt, *args):
    run_evaluation(compose_config("evaluate", [f"ckpt={ckpt}", "data.workers=0", "runtime.device=cpu", *args]))


def symlink_loop(tmp_path):
    data = make_folder(tmp_path / "ds")
    (data / "train" / "n01" / "loop.JPEG").symlink_to("loop.JPEG")
    Trainer(compose_config("train", tiny_overrides(data, tmp_path / "run")))


def eval_crop_larger_than_resize(tmp_path):
    _, ckpt = _trained(tmp_path)
    _evaluate(ckpt, "data.crop_size=40", "data.eval_resize=36")


def eval_output_is_a_directory(tmp_path):
    _evaluate(tmp_path / "never_read.pt", f"output={tmp_path}")


def eval_output_under_a_file(tmp_path):
    (tmp_path / "a_file").write_text("x")
    _evaluate(tmp_path / "never_read.pt", f"output={tmp_path / 'a_file' / 'results.json'}")


def eval_output_unwritable(tmp_path):
    _evaluate(tmp_path / "never_read.pt", "output=/proc/results.json")


def resume_checkpoint_without_optimizer(tmp_path):
    data, ckpt = _trained(tmp_path)
    partial = tmp_path / "partial.pt"
    state = torch.load(ckpt, weights_only=True)
    del state["optimizer"]
    torch.save(state, partial)
    Trainer(compose_config("train", tiny_overrides(data, tmp_path / "other", f"resume={partial}")))


def world_size_not_a_number(tmp_path):
    detect_env({"WORLD_SIZE": "abc"})


CASES = {
    "symlink loop in the dataset": (symlink_loop, "Too many levels of symbolic links"),
    "crop too small for GoogLeNet": (lambda p: compose_config("train", ["data.crop_size=16"]),
                                     "data.crop_size=16 is too small for inception_v1"),
    "inception_v3 at 64 px": (lambda p: compose_config("train", ["model=inception_v3", "data.crop_size=64"]),
                              "data.crop_size=64 is too small for inception_v3: its pooling stages need at least 75"),
    "evaluation crop larger than its resize": (eval_crop_larger_than_resize, "data.crop_size=40 is larger than"),
    "output= a directory": (eval_output_is_a_directory, "is a directory; pass a file name"),
    "output= under a file": (eval_output_under_a_file, "lies under the file"),
    "output= unwritable": (eval_output_unwritable, "cannot be written"),
    "run dir is a file": (lambda p: (p / "f").write_text("x") and check_command_line(
        "train", ["data=sample", f"hydra.run.dir={p / 'f'}"], False), "is a file, not a directory"),
    "seed beyond 2**63": (lambda p: compose_config("train", [f"seed={2**63}"]), f"seed={2**63} must be <="),
    "lr of 1e308": (lambda p: compose_config("train", ["optim.lr=1e308"]), "optim.lr=1e+308 must be <="),
    "milestones not numbers": (lambda p: compose_config("train", ["schedule=multistep", "schedule.milestones=[a]"]),
                               "schedule.milestones=['a'] must be a list of numbers"),
    "checkpoint with the tag but missing keys": (resume_checkpoint_without_optimizer, "lacks optimizer"),
    "WORLD_SIZE=abc": (world_size_not_a_number, "WORLD_SIZE='abc' is not an integer"),
    "crops=144.0": (lambda p: compose_config("evaluate", ["ckpt=x.pt", "crops=144.0"]), "crops=144.0 is not one of"),
    "crops=true": (lambda p: compose_config("evaluate", ["ckpt=x.pt", "crops=true"]), "crops=True is not one of"),
    "model.aux_pool=bogus": (lambda p: compose_config("train", ["model.aux_pool=bogus"]),
                             "model.aux_pool='bogus' is not one of: paper, adaptive"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_one_line_error(tmp_path, case):
    make, message = CASES[case]
    with pytest.raises(UserError) as e:
        make(tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_checkpoint_tag_is_required(tmp_path):
    torch.save({"format": FORMAT}, tmp_path / "empty.pt")
    with pytest.raises(UserError, match="lacks model, config, classes"):
        _evaluate(tmp_path / "empty.pt")
