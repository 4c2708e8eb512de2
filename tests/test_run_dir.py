"""The run directory is the user's: a refused or failed start leaves another run's records alone, a live
trainer's lock cannot be defeated, and system folders are refused (issue 21, items 2-4)."""
import multiprocessing

import pytest
from helpers import run_script, tiny_overrides

from common.errors import UserError
from googlenet.cli.config import compose_config
from googlenet.cli.precheck import check_command_line
from googlenet.training.rundir import LOCK_NAME, RunLock
from googlenet.training.trainer import Trainer

RECORDS = {".hydra/config.yaml": "seed: 0\n", ".hydra/overrides.yaml": "- seed=0\n", "train.log": "epoch 1/1 ...\n",
           "checkpoints/last.pt": "a finished run's checkpoint", "result.json": "{\"status\": \"completed\"}\n"}


def finished_run(run_dir):
    for name, text in RECORDS.items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(text)
    return run_dir


def assert_untouched(run_dir):
    for name, text in RECORDS.items():
        assert (run_dir / name).read_text() == text, name


def test_a_fresh_run_refused_for_a_finished_run_dir_leaves_its_records_alone(tmp_path, tiny_folder):
    run_dir = finished_run(tmp_path / "run")
    with pytest.raises(UserError, match=r"already holds checkpoints \(last.pt\)"):  # the check before Hydra starts
        check_command_line("train", tiny_overrides(tiny_folder, run_dir), multirun=False)
    assert_untouched(run_dir)  # refused before Hydra could write its record over the run's


def test_a_failed_resume_removes_only_what_it_created(tmp_path, tiny_folder):
    run_dir = finished_run(tmp_path / "run")
    result = run_script("train.py", *tiny_overrides(tmp_path / "missing", run_dir), "resume=auto", timeout=120,
                        cwd=tmp_path)
    assert result.returncode == 2 and "dataset root" in result.stderr, result.stderr
    for name in RECORDS:  # Hydra rewrote its record for the new command; nothing of the run was deleted
        assert (run_dir / name).is_file(), name
    assert (run_dir / "train.log").read_text().startswith(RECORDS["train.log"])
    assert (run_dir / "checkpoints" / "last.pt").read_text() == RECORDS["checkpoints/last.pt"]


def test_a_live_trainers_lock_cannot_be_defeated(tmp_path, tiny_folder):
    run_dir = finished_run(tmp_path / "run")
    lock = RunLock(run_dir).acquire()  # run A, alive
    try:
        for extra in ([], ["resume=auto"]):  # runs B and C: refused before Hydra writes anything
            with pytest.raises(UserError, match=r"another trainer \(pid \d+\) is writing to"):
                check_command_line("train", tiny_overrides(tiny_folder, run_dir, *extra), multirun=False)
        with pytest.raises(UserError, match="another trainer"):  # and by the trainer itself, should one get there
            Trainer(compose_config("train", tiny_overrides(tiny_folder, run_dir, "resume=auto")))
        assert_untouched(run_dir)
        assert (run_dir / LOCK_NAME).is_file()
    finally:
        lock.release()


def test_a_start_that_fails_removes_the_lock_file_it_created_and_only_that(tmp_path, tiny_folder):
    with pytest.raises(UserError, match="dataset root"):
        Trainer(compose_config("train", tiny_overrides(tmp_path / "missing", tmp_path / "new")))
    assert not (tmp_path / "new" / LOCK_NAME).exists()
    run_dir = finished_run(tmp_path / "run")
    RunLock(run_dir).acquire().release()  # a lock file that a finished run left
    with pytest.raises(UserError, match="dataset root"):
        Trainer(compose_config("train", tiny_overrides(tmp_path / "missing", run_dir, "resume=auto")))
    assert (run_dir / LOCK_NAME).exists()  # not this start's to remove


@pytest.mark.parametrize("run_dir, message", [("/", "is a filesystem root"), ("/etc", "is a system folder"),
                                              ("/usr", "is a system folder")])
def test_system_folders_are_refused_as_run_dirs(run_dir, message):
    with pytest.raises(UserError, match=message):
        check_command_line("train", ["data=sample", f"hydra.run.dir={run_dir}"], multirun=False)
    with pytest.raises(UserError, match=message):
        check_command_line("train", ["data=sample", "seed=0,1", f"hydra.sweep.dir={run_dir}"], multirun=True)


def test_a_run_whose_every_training_image_is_unreadable_is_one_line_and_leaves_no_run_dir(tmp_path, tiny_folder):
    from googlenet.training.trainer import train
    for path in (tiny_folder / "train").glob("*/*"):
        path.write_bytes(b"not an image")
    run_dir = tmp_path / "run"
    # found in a loader worker: torch re-raises it in the trainer wrapped in the worker's traceback
    others = set(multiprocessing.active_children())
    with pytest.raises(UserError) as e:
        train(compose_config("train", tiny_overrides(tiny_folder, run_dir, "data.workers=2")))
    assert str(e.value) == f"no readable image in {tiny_folder / 'train'}; check the files"
    # its (persistent) loader workers ended with it, not in a later garbage collection (which stalled 20 s)
    assert not set(multiprocessing.active_children()) - others
    # no config.yaml, no lock: nothing of a run (the command's clean-up then removes its log and the folder)
    assert [p.name for p in run_dir.rglob("*") if p.is_file()] == ["train.log"]
