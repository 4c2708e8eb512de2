"""Two-process DDP runs on CPU (gloo) under torchrun."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, installed, make_folder, tiny_overrides, wait_for, wait_until

from googlenet.checkpoint import load_checkpoint
from googlenet.cli.config import compose_config
from googlenet.evaluation import run_evaluation
from googlenet.models import build_model
from googlenet.training.trainer import train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")

NO_RANDOMNESS = ["model=inception_v1_paper", "optim.lr=2.0", "model.dropout=0", "model.aux_dropout=0", "data.augment.lighting=0"]


def torchrun(*args, nproc=2, extra_launcher=(), cwd=ROOT, popen=False, timeout=300, script="train.py",
             launcher="torch.distributed.run"):
    cmd = [sys.executable, "-m", launcher, "--standalone", f"--nproc_per_node={nproc}",
           *extra_launcher, str(ROOT / script), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def one_thread():
    """This process computes with one thread, as each torchrun worker here does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _no_run_dir(overrides):
    return [o for o in overrides if not o.startswith("hydra.run.dir=")]


def test_two_processes_match_one_process_with_double_batch(tmp_path, tiny_folder):
    common = ["trainer.epochs=2", "ema.enabled=true", "runtime.precision=32", *NO_RANDOMNESS]
    # one thread per process in both runs: CPU conv kernels give different rounding for other thread counts
    with one_thread():
        single = train(compose_config("train", tiny_overrides(tiny_folder, tmp_path / "single", *common,
                                                              "data.batch_size=4")))
    assert single.exit_code == 0
    # the DDP run uses the default, time-stamped run directory: all ranks must agree on one
    ddp = torchrun(*_no_run_dir(tiny_overrides(tiny_folder, "unused", *common)), cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    run_dirs = list((tmp_path / "runs" / "inception_v1_paper").iterdir())
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert (run_dir / ".hydra" / "overrides.yaml").is_file() and not list(tmp_path.glob("runs/*/*/*/.hydra"))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert (run_dir / "train.log").read_text().count("epoch 2/2") == 1
    a = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    b = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6
    assert len(b["rng"]) == 2 and not torch.equal(b["rng"][0]["torch"], b["rng"][1]["torch"])  # per-rank streams
    assert any(k.startswith("aux1.") for k in a["model"])
    torch.manual_seed(0)  # the trainer's initial weights
    initial = build_model("inception_v1_paper", num_classes=3).state_dict()
    ratios = []
    for key, value in a["model"].items():
        moved = (value - initial[key]).norm()
        assert moved > 0, key
        # the two runs agree to float noise: far closer than how far training moved the weights
        ratios.append(((value - b["model"][key]).norm() / moved).item())
    assert max(ratios) < 1e-2, max(ratios)
    # validation counted every image once: same accuracy, 12 images, on both
    assert a["metrics"]["val_images"] == b["metrics"]["val_images"] == 12
    assert a["metrics"]["val_top1"] == pytest.approx(b["metrics"]["val_top1"])
    # evaluation on 2 ranks (as under torchrun: its variables, gloo): 12 images over 2 ranks (no padding), the
    # same numbers as one process, for an ensemble (the raw and the EMA weights of the run) on all three crop
    # modes, with probabilities saved
    ckpt = run_dir / "checkpoints" / "last.pt"
    raw = tmp_path / "raw.pt"
    state = torch.load(ckpt, weights_only=True)
    state["ema"] = None
    torch.save(state, raw)
    args = [f"ckpt=[{ckpt},{raw}]", "crops=all", "data.workers=0", "runtime.precision=32", "save_probs=true"]
    for name in ("one", "two"):
        if name == "one":  # in this process: evaluate.py's command line is tested in test_evaluate.py
            with one_thread():
                run_evaluation(compose_config("evaluate", [*args, f"output={tmp_path / 'one.json'}"]))
        else:  # forked ranks share this process's imports (the training above ran under torchrun itself)
            _forked_ranks(_evaluate_as_rank, [*args, f"output={tmp_path / 'two.json'}"])
        (tmp_path / f"{name}.probs").mkdir()
        for path in [*ckpt.parent.glob("last.*.probs.pt"), *tmp_path.glob("raw.*.probs.pt")]:
            path.rename(tmp_path / f"{name}.probs" / path.name)
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["images"] == two["images"] == 12 and two["processes"] == 2
    assert one["table"] == two["table"]
    assert len(list((tmp_path / "one.probs").iterdir())) == 6
    for path in (tmp_path / "one.probs").iterdir():  # every image once, in order, the same probabilities
        a, b = torch.load(path, weights_only=True), torch.load(tmp_path / "two.probs" / path.name, weights_only=True)
        assert a["images"] == b["images"] and len(a["images"]) == 12 and torch.equal(a["probs"], b["probs"])


def _forked_ranks(fn, *args) -> None:
    """`fn(rank, port, *args)` in 2 forked processes with torchrun's variables; fails if either fails."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.start_processes(fn, args=(port, *args), nprocs=2, join=True, start_method="fork")


def _as_torchrun_rank(rank: int, port: int) -> None:
    torch.set_num_threads(1)  # a forked process must not use the thread pool its parent may have started
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def _evaluate_as_rank(rank: int, port: int, overrides: list[str]) -> None:
    _as_torchrun_rank(rank, port)
    run_evaluation(compose_config("evaluate", overrides))


def _children(pid):
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


def test_a_killed_worker_is_restarted_from_last_pt_and_sigterm_to_the_launchers_group_saves(tmp_path):
    data = make_folder(tmp_path / "ds", per_class=8)  # 24 images: 6 steps per epoch on 2 ranks of batch 2
    run_dir, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.pt"
    args = tiny_overrides(data, run_dir, "trainer.epochs=500", "trainer.checkpoint_every_steps=3",
                          "trainer.limit_val_batches=1", "data.workers=1")
    # torchrun with a truthful exit status, allowed one restart
    proc = torchrun(*args, extra_launcher=["--max-restarts=1"], popen=True, launcher="googlenet.cli.launch")
    deadline = time.time() + 240
    wait_for(last, deadline, "the first last.pt", proc)
    workers = _children(proc.pid)
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)
    # the launcher starts both workers again; they resume from last.pt and save it again 3 steps on
    wait_until(lambda: "resumed from" in (run_dir / "train.log").read_text(), deadline, "the restart", proc)
    resumed = last.stat().st_mtime_ns
    wait_until(lambda: last.stat().st_mtime_ns != resumed, deadline, "the restarted workers' save", proc)
    time.sleep(0.5)  # now mid-epoch
    os.killpg(proc.pid, signal.SIGTERM)  # launcher, workers and their loader workers alike
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped at epoch" in out and "all 2 worker(s) saved and exited 0" in out, out
    # the surviving worker of the first pair fails on its lost peer; the restarted pair stops cleanly
    assert "resumed from" in out and "Traceback" not in out.split("resumed from")[-1].split("stopped at epoch")[0]
    log = (run_dir / "train.log").read_text()
    assert all(log.count(f"epoch {e}/500 |") <= 1 for e in range(1, 500)), log  # the restart repeated no epoch
    state = load_checkpoint(last)
    assert 1 <= state["epoch"] < 500 and state["step"] == 6 * state["epoch"] + state["samples_in_epoch"] // 4
    done = state["epoch"] + 1
    # resumed in one process (batch 2 there, 4 over both ranks here): the epoch's other images, none twice
    finish = train(compose_config("train", [*args[:-4], f"trainer.epochs={done}", "trainer.limit_val_batches=1",
                                            "resume=auto"]))
    assert finish.exit_code == 0
    end = load_checkpoint(last)
    assert (end["epoch"], end["step"]) == (done, state["step"] + (24 - state["samples_in_epoch"]) // 2)


def test_rank_and_world_size_from_torchrun_submitit_and_slurm_variables():
    from googlenet.distributed import detect_env
    torchrun = detect_env({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2",
                           "SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"})  # torchrun inside srun: torchrun's
    assert (torchrun.rank, torchrun.world_size, torchrun.local_rank, torchrun.launcher) == (2, 4, 0, "torchrun")
    local = detect_env({"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1",
                        "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_JOB_ID": "4242"})
    assert (local.rank, local.world_size, local.local_rank, local.master_addr) == (1, 2, 1, "127.0.0.1")
    slurm = {"SLURM_STEP_NUM_TASKS": "16", "SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_STEP_NUM_NODES": "2",
             "SLURM_STEP_NODELIST": "gpu-[007-008]", "SLURM_JOB_ID": "123", "SUBMITIT_EXECUTOR": "slurm"}
    task = detect_env(slurm)
    assert (task.rank, task.world_size, task.local_rank, task.local_world_size) == (9, 16, 1, 8)
    assert task.master_addr == "gpu-007" and 20000 <= task.master_port < 60000
    assert detect_env(slurm).master_port == task.master_port  # every task computes the same port
    # inside an allocation but not in an srun step (e.g. `python train.py` in an sbatch script): one process
    assert not detect_env({"SLURM_NTASKS": "8", "SLURM_PROCID": "0", "SLURM_JOB_ID": "5"}).enabled
    assert not detect_env({}).enabled
    from common.errors import UserError
    with pytest.raises(UserError, match="WORLD_SIZE='abc' is not an integer"):
        detect_env({"WORLD_SIZE": "abc"})


def test_launcher_reports_a_failure_when_a_worker_does_not_stop_cleanly(tmp_path):
    # workers that die of the signal (here `sleep`) report nothing: the launcher must not claim success
    cmd = [sys.executable, "-m", "googlenet.cli.launch", "--standalone", "--nproc_per_node=2", "--no-python", "sleep", "60"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    time.sleep(5)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "not cleanly: rank 0: no report (killed or crashed); rank 1: no report" in out, out


def test_a_user_error_under_the_launcher_is_one_line_and_exit_2(tmp_path):
    # both workers find it; one line is printed, and the launcher does not restart what a restart cannot fix
    # (each restart would print the line again)
    result = torchrun("data=folder", f"data.root={tmp_path / 'missing'}", launcher="googlenet.cli.launch", cwd=tmp_path,
                      extra_launcher=["--max-restarts=3"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [f"error: dataset root {tmp_path / 'missing'} does not exist; set "
                                                  "data.root (or IMAGENET_ROOT) to a folder with train/ and val/ "
                                                  "(scripts/prepare_imagenet.py)"]
    assert not list(tmp_path.iterdir())  # no run dir


@pytest.mark.skipif(not installed("nvidia.dali"), reason="needs NVIDIA DALI")
def test_dali_under_two_processes_validates_every_image_once(tmp_path):
    data = make_folder(tmp_path / "ds", per_class=5)  # 15 validation images over 2 ranks: 8 + 7
    run_dir = tmp_path / "run"
    result = torchrun(*tiny_overrides(data, run_dir, "trainer.epochs=1", "data.loader=dali"))
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = load_checkpoint(run_dir / "checkpoints" / "last.pt")["metrics"]
    assert metrics["val_images"] == 15


def _validate_with_a_stop_on_rank_0(rank: int, port: int, out: str) -> None:
    """One rank of `validate_models` over the raw and the EMA model, rank 0 asked to stop at its first batch."""
    from datetime import timedelta

    from torch import nn

    from data.device_ops import BatchNormalizer
    from googlenet.distributed import DistEnv
    from googlenet.runtime import runtime_from_config
    from googlenet.training.runlog import RunLog
    from googlenet.training.stopping import TrainingInterrupted
    from googlenet.training.validation import validate_models
    torch.set_num_threads(1)  # a forked process must not use the thread pool its parent may have started
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                                         timeout=timedelta(seconds=20))
    env = DistEnv(rank=rank, world_size=2, local_rank=rank, local_world_size=2, launcher="torchrun")

    class Batches(list):
        def set_epoch(self, epoch, start=0):
            pass
    loader = Batches([(torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8), torch.tensor([0, 1]), [])] * 3)
    models = {"val": nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), "val_ema": nn.Sequential(nn.Flatten(),
                                                                                          nn.Linear(192, 2))}
    runtime = runtime_from_config(compose_config("train", ["runtime.device=cpu", "runtime.precision=32"]).runtime)
    try:
        log = RunLog(Path(out), enabled=False, tensorboard=False)
        validate_models(models, loader, BatchNormalizer(), runtime, env, log, on_batch=lambda: rank != 0)
        outcome = "finished"
    except TrainingInterrupted:
        outcome = "interrupted"
    Path(out, f"rank{rank}").write_text(outcome)
    torch.distributed.destroy_process_group()


def test_a_stop_during_validation_with_ema_ends_every_rank_alike(tmp_path):
    # a rank whose raw-weights validation was cut short must not pair its stop agreement with the other rank's
    # EMA meters: both ranks take the same collectives and both stop (before the fix: a 20 s timeout, or a hang)
    _forked_ranks(_validate_with_a_stop_on_rank_0, str(tmp_path))
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["interrupted", "interrupted"]


def test_each_rank_picks_a_gpu_it_can_see(monkeypatch):
    from common.errors import UserError
    from googlenet.distributed import DistEnv, local_cuda_index
    rank3 = DistEnv(rank=3, world_size=4, local_rank=3, local_world_size=4, launcher="srun")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)  # every task sees the node's GPUs
    assert local_cuda_index(rank3) == 3
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # --gpus-per-task=1: each task sees only cuda:0
    assert local_cuda_index(rank3) == 0
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match="local rank 3 of 4 sees 2 GPU"):
        local_cuda_index(rank3)


def _scan_as_rank(rank: int, port: int, split: str, out: str) -> None:
    _as_torchrun_rank(rank, port)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    import data.dali as dali
    checked = []
    real = dali.quick_check
    dali.quick_check = lambda path: checked.append(path) or real(path)
    bad = dali.unreadable_files(Path(split), sorted(str(p) for p in Path(split).rglob("*.JPEG")), threads=1)
    torch.distributed.barrier()  # the cache is written
    again = dali.unreadable_files(Path(split), sorted(str(p) for p in Path(split).rglob("*.JPEG")), threads=1)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"bad": sorted(bad), "again": sorted(again),
                                                          "checked": checked}))
    torch.distributed.destroy_process_group()


def test_ranks_share_the_dali_scan_of_a_split(tmp_path, monkeypatch):
    # each rank reads half of the files (a node of 8 GPUs reads each file once, not 8 times), all agree on the
    # unreadable ones, and the cache then spares every rank the scan
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    split = make_folder(tmp_path / "ds", per_class=3, splits=("train",)) / "train"
    broken = sorted(split.rglob("*.JPEG"))[::4]
    for path in broken:
        path.write_bytes(b"not a jpeg")
    _forked_ranks(_scan_as_rank, str(split), str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    files = sorted(str(p) for p in split.rglob("*.JPEG"))
    assert ranks[0]["bad"] == ranks[1]["bad"] == ranks[0]["again"] == sorted(map(str, broken))
    assert sorted(ranks[0]["checked"] + ranks[1]["checked"]) == files  # each file read once, by one rank
    assert ranks[0]["checked"] == files[0::2] and ranks[1]["checked"] == files[1::2]
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 1
