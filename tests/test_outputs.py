"""output= never loses data: not an input of the command, not a file written beside it, not a device; and the
image files a command reads are regular files (issue 21, items 1 and 6)."""
import os

import pytest
from helpers import make_image

from common.errors import UserError
from googlenet.cli.config import compose_config
from googlenet.deploy.export import export
from googlenet.deploy.predict import list_images, predict
from googlenet.evaluation import run_evaluation


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"an 83 MB checkpoint")  # the output checks run before it is read
    return path


def refused(run, command, overrides, message):
    with pytest.raises(UserError, match=message):
        workers = [] if command == "export" else ["data.workers=0"]
        run(compose_config(command, [*overrides, *workers, "runtime.device=cpu"]))


def test_evaluate_never_writes_over_its_inputs_or_beside_files(tmp_path, ckpt):
    refused(run_evaluation, "evaluate", [f"ckpt={ckpt}", f"output={ckpt}"], "would overwrite .*best.pt, an input")
    refused(run_evaluation, "evaluate", [f"ckpt={ckpt}", f"output={tmp_path / 'y.md'}"],
            "is also the name of a file written beside it")
    refused(run_evaluation, "evaluate", [f"ckpt={ckpt}", "output=/dev/null"], "is not a regular file")
    assert ckpt.read_bytes() == b"an 83 MB checkpoint"


def test_export_never_writes_over_its_checkpoint(tmp_path, ckpt):
    refused(export, "export", [f"ckpt={ckpt}", f"output={ckpt}"], "would overwrite .*best.pt, an input")
    named = tmp_path / "m.pt2"
    named.write_bytes(b"a checkpoint named like an export")
    refused(export, "export", [f"ckpt={named}", "format=pt2"], "would overwrite .*m.pt2, an input")  # the default
    assert named.read_bytes() == b"a checkpoint named like an export"


def test_predict_never_writes_over_an_image_or_its_own_csv(tmp_path, ckpt):
    photo = make_image(tmp_path / "photos" / "cat.jpg")
    before = photo.read_bytes()
    refused(predict, "predict", [f"ckpt={ckpt}", f"images={photo.parent}", f"output={photo}"],
            "would overwrite .*cat.jpg, an input")
    refused(predict, "predict", [f"ckpt={ckpt}", f"images={photo}", f"output={tmp_path / 'x.csv'}"],
            "is also the name of a file written beside it")
    assert photo.read_bytes() == before


def test_only_regular_files_are_read_as_images(tmp_path):
    photos = tmp_path / "photos"
    good = make_image(photos / "a.jpg")
    os.mkfifo(photos / "x.JPEG")  # opening it would block forever
    (photos / "zero.jpg").symlink_to("/dev/zero")  # reading it would never end
    assert list_images(photos) == [good]


def test_the_image_walk_stays_inside_its_folder(tmp_path):
    photos, outside = tmp_path / "photos", tmp_path / "outside"
    inside = make_image(photos / "nested" / "a.jpg")
    make_image(outside / "b.jpg")
    (photos / "out").symlink_to(outside)      # a link out of the tree: not followed
    (photos / "proc").symlink_to("/proc")     # where images=/ used to walk every process's cwd
    (photos / "up").symlink_to(photos)        # a loop back up
    (photos / "again").symlink_to(photos / "nested")  # a second name of a folder inside: walked once
    assert list_images(photos) == [inside]
    for system in ("/proc", "/proc/self", "/sys"):
        with pytest.raises(UserError, match=f"images={system} is a system folder"):
            list_images(system)


def test_printed_names_are_one_line_each():
    from common.files import shown
    assert shown("photos/cat\nrm -rf ~\x1b[2J.jpg") == "photos/cat\\nrm -rf ~\\x1b[2J.jpg"
    assert shown("photos/Ünïcode café.jpg") == "photos/Ünïcode café.jpg"


def test_a_long_pass_off_a_terminal_prints_a_line_every_half_minute():
    import io

    from common.progress import ProgressLine
    clock, out = [0.0], io.StringIO()
    line = ProgressLine("evaluating", total_batches=100, stream=out, clock=lambda: clock[0])
    for _ in range(50):
        clock[0] += 1.0  # a batch of 8 images a second
        line.update(8)
    assert out.getvalue().splitlines() == [
        "evaluating: batch 30/100, 240 images, 8.0 images/s, about 70 s left"]


def test_messages_name_what_is_wrong(tmp_path):
    import os as _os

    import torch

    from data.sample import ensure_sample_data
    from googlenet.checkpoint import FORMAT, read_weights_file
    from googlenet.evaluation.run import class_difference

    class RunsCode:
        def __reduce__(self):
            return (_os.system, ("echo pwned",))
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": RunsCode()}, evil)
    with pytest.raises(UserError, match="is not a safe checkpoint"):
        read_weights_file(evil)
    with pytest.raises(UserError, match="is not a regular file"):
        read_weights_file("/dev/zero")
    assert class_difference(["a", "b", "c"], ["a", "x", "c"]) == "class 1 is 'b' vs 'x'"
    assert class_difference(["a"], ["a", "b"]) == "1 vs 2 classes"
    root = ensure_sample_data(tmp_path / "sample")
    mask = _os.umask(0)
    _os.umask(mask)
    assert root.stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700


def test_non_finite_weights_are_refused_where_they_enter(tmp_path):
    import torch
    from torch import nn

    from googlenet.checkpoint import FORMAT
    from googlenet.evaluation.models import load_for_eval
    from googlenet.training.finetune import load_start_weights
    poisoned = tmp_path / "nan.pt"
    torch.save({"format": FORMAT, "model": {"weight": torch.tensor([float("nan")])}, "ema": None, "config": {},
                "classes": []}, poisoned)
    cfg = compose_config("evaluate", [f"ckpt={poisoned}"])
    with pytest.raises(UserError, match="holds non-finite raw weights"):  # evaluate, predict and export load here
        load_for_eval(cfg, poisoned)
    with pytest.raises(UserError, match="finetune.weights=.* holds non-finite weights"):
        load_start_weights(nn.Linear(1, 1), poisoned)


def test_the_resume_hint_names_the_launcher_that_ran(monkeypatch, tmp_path):
    from googlenet.cli.job import Job
    from googlenet.cli.launch import STATUS_DIR_ENV
    job = Job(tmp_path / "run", False, 0, ["data=sample"], "train.py", tmp_path)
    for key, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    assert job.resume_command().startswith("torchrun --nproc_per_node=2 train.py data=sample resume=auto")
    monkeypatch.setenv(STATUS_DIR_ENV, str(tmp_path))
    assert job.resume_command().startswith("python -m googlenet.cli.launch --nproc_per_node=2 train.py")
    # the SLURM script passes data.workers before the user's overrides: the hint names the value that was used
    job = Job(tmp_path / "run", False, 0, ["data.workers=7", "resume=auto", "data=sample", "data.workers=0"],
              "train.py", tmp_path)
    assert " train.py data=sample data.workers=0 resume=auto hydra.run.dir=" in job.resume_command()
    # our launcher hands its flags on (the SLURM script's rendezvous): the hint is the command that ran
    from googlenet.cli.launch import FLAGS_ENV, launcher_flags
    flags = ["--nnodes=2", "--nproc_per_node", "8", "--rdzv_endpoint=node1:29501", "--max-restarts=3"]
    assert launcher_flags([*flags, "train.py", "data=sample", "--nnodes=3"]) == flags
    monkeypatch.setenv(FLAGS_ENV, " ".join(flags))
    assert job.resume_command().startswith(f"python -m googlenet.cli.launch {' '.join(flags)} train.py data=sample ")
