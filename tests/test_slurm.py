"""The cluster path against a real single-node SLURM (scripts/local_slurm.py, started once for these tests):
a submitit sweep one of whose jobs gets submitit's preemption signal, a DDP job of two SLURM tasks, and the
sbatch script from a fresh checkout at a time limit. Each test is a real submission; they skip where no private
SLURM can be started (it needs root, and apt-get when SLURM is not installed)."""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch
from helpers import ROOT, wait_for

sys.path.insert(0, str(ROOT / "scripts"))
import local_slurm  # noqa: E402

# one worker runs them all (one cluster); they wait on jobs more than they compute, so they start early
pytestmark = [pytest.mark.xdist_group("slurm"), pytest.mark.slow]

TINY = ["data.crop_size=32", "data.eval_resize=36", "data.batch_size=4", "runtime.precision=32",
        "trainer.progress=false", "trainer.limit_val_batches=1", "schedule.warmup_epochs=0"]


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A private single-node SLURM for this test session: the environment that submits to it."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs root to start a private single-node SLURM (scripts/local_slurm.py)")
    folder = tmp_path_factory.mktemp("slurm")
    try:
        conf = local_slurm.start(folder, cpus=4)
    except local_slurm.SlurmUnavailable as e:
        pytest.skip(str(e))
    # the jobs run this interpreter (the sbatch script calls `python`) and this checkout, each on the one CPU it
    # asked for (nothing binds them here: torch would start a thread per core in every job)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    yield {**os.environ, **conf, "PATH": path, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    local_slurm.stop(folder)


def run(args, env, cwd, timeout=180, extra_env=None):
    return subprocess.run(args, capture_output=True, text=True, env={**env, **(extra_env or {})}, cwd=cwd,
                          timeout=timeout)


def train(env, cwd, *overrides, timeout=180) -> subprocess.CompletedProcess:
    return run([sys.executable, str(ROOT / "train.py"), *overrides], env, cwd, timeout)


def scontrol(env, *args) -> str:
    done = run(["scontrol", *args], env, ROOT, timeout=30)
    assert done.returncode == 0, f"scontrol {' '.join(args)}: {done.stderr}"
    return done.stdout


def job_field(env, job: str, name: str) -> str:
    found = re.search(rf"\b{name}=(\S*)", scontrol(env, "show", "job", job))
    return found[1] if found else ""


def final_state(env, job: str, deadline: float) -> str:
    """The job's state once it has ended (a submitit job's result file appears before its job ends)."""
    while (state := job_field(env, job, "JobState")) in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING",
                                                         "REQUEUED"):
        assert time.time() < deadline, scontrol(env, "show", "job", job)
        time.sleep(0.3)
    return state


def release_when_requeued(env, job: str, deadline: float, **updates) -> None:
    """SLURM holds a requeued batch job for about two minutes (Reason=BeginTime) while the node cleans up the
    previous run (a job started again before its old processes are gone is refused: "already killed"). The
    tests let it start as soon as those processes are gone (with `updates`, e.g. its full time limit again)."""
    while time.time() < deadline:
        if job_field(env, job, "JobState") == "PENDING" and job_field(env, job, "Reason") == "BeginTime":
            raw_id = job_field(env, job, "JobId")
            while subprocess.run(["pgrep", "-f", rf"slurmstepd: \[{raw_id}\."], capture_output=True).returncode == 0:
                assert time.time() < deadline, f"job {job}'s previous run did not end"
                time.sleep(0.3)
            time.sleep(1)
            scontrol(env, "update", f"JobId={job}", "StartTime=now", *(f"{k}={v}" for k, v in updates.items()))
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job} was not requeued: {scontrol(env, 'show', 'job', job)}")


def steps_of(checkpoint: Path) -> int:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["step"]


def submitit_jobs(sweep_dir: Path) -> list[str]:
    """The SLURM ids of a sweep's jobs: submitit submits several as one job array (<array>_<task>), one alone."""
    names = [p.name for p in (sweep_dir / ".submitit").iterdir()]
    tasks = sorted(n for n in names if re.fullmatch(r"\d+_\d+", n))
    return tasks or sorted(n for n in names if n.isdigit())


def test_a_submitit_slurm_sweep_finishes_a_preempted_job_and_warns_once_that_sacct_fails(slurm, sample_root,
                                                                                           tmp_path):
    # a sweep of two jobs; one of them gets submitit's preemption signal after its first epoch
    sweep_dir = tmp_path / "sweep"
    epochs, batches = 4, 4
    args = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=debug", "seed=0,1", "data=sample", f"data.root={sample_root}",
            f"trainer.epochs={epochs}", f"trainer.limit_train_batches={batches}", *TINY,
            f"hydra.sweep.dir={sweep_dir}"]
    with open(tmp_path / "sweep.out", "w") as output:
        sweep = subprocess.Popen(args, cwd=tmp_path, env=slurm, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 240
            wait_for(sweep_dir / "0" / "checkpoints" / "last.pt", deadline, "job 0's first last.pt")
            jobs = submitit_jobs(sweep_dir)
            assert len(jobs) == 2, jobs
            assert run(["scancel", "--signal=USR2", jobs[0]], slurm, tmp_path).returncode == 0  # what preemption sends
            release_when_requeued(slurm, jobs[0], deadline)
            sweep.wait(timeout=max(1, deadline - time.time()))
        finally:
            sweep.kill()
    printed = (tmp_path / "sweep.out").read_text()
    assert sweep.returncode == 0, printed[-3000:]
    summary = printed[printed.index("sweep summary"):].splitlines()
    assert summary[1].startswith("  job 0 seed=0: completed") and summary[2].startswith("  job 1 seed=1: completed")
    assert all(final_state(slurm, j, time.time() + 30) == "COMPLETED" for j in jobs)
    # accounting is off: submitit's status polls fail, and the sweep says so once, not once per poll
    assert "Bypassing sacct error" not in printed
    assert len(set(re.findall(r"\((\S+ \S+)\) - sacct fails on this cluster", printed))) == 1, printed[-3000:]
    # the preempted job wrote last.pt before submitit requeued it, and its second run resumed from there
    log = (sweep_dir / "0" / "train.log").read_text()
    stopped = re.search(r"stopped at epoch \d+, step (\d+): wrote", log)
    assert stopped and f"resumed from {sweep_dir}/0/checkpoints/last.pt" in log, log[-3000:]
    assert 0 < int(stopped[1]) < epochs * batches
    assert [job_field(slurm, j, "Restarts") for j in jobs] == ["1", "0"]
    # it ends with the same number of steps as its uninterrupted sibling
    assert steps_of(sweep_dir / "0" / "checkpoints" / "last.pt") == steps_of(sweep_dir / "1" / "checkpoints" /
                                                                           "last.pt") == epochs * batches
    assert "resumed from" not in (sweep_dir / "1" / "train.log").read_text()


def test_a_ddp_job_of_two_slurm_tasks_is_one_run(slurm, sample_root, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = train(slurm, tmp_path, "-m", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug",
                   "hydra.launcher.tasks_per_node=2", "hydra.launcher.setup=['echo set up']",
                   "data=sample", f"data.root={sample_root}", "trainer.epochs=1",
                   "trainer.limit_train_batches=2", *TINY, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    # a task that fails ends the others at once (srun -K), after the user's own setup lines
    [script] = (sweep_dir / ".submitit").glob("*/*_submission.sh")
    assert "echo set up\nexport SLURM_KILL_BAD_EXIT=1\n" in script.read_text()
    assert [p.name for p in sweep_dir.iterdir() if not p.name.startswith(".") and p.is_dir()] == ["0"]
    log = (sweep_dir / "0" / "train.log").read_text()
    assert "processes: 2, device: cpu" in log
    record = json.loads((sweep_dir / "0" / "result.json").read_text())
    assert record["status"] == "completed" and record["provenance"]["world_size"] == 2


def fresh_checkout(tmp_path: Path) -> Path:
    """The repository's files as a clone would have them (tracked and new files, nothing that git ignores)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True)
    if listed.returncode != 0:
        pytest.skip("needs the repository's git checkout")
    clone = tmp_path / "clone"
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    return clone


CHECK_PERIOD = 30  # slurmctld looks at time limits (and sends --signal warnings) every 30 s from its start
WARNING = 120  # the script's --signal=TERM@120: seconds before the time limit
TIME_LIMITED = "test_the_sbatch_script_from_a_fresh_checkout_continues_itself_after_a_time_limit"


class TimeLimitedJob(threading.Thread):
    """scripts/slurm_train.sbatch from a fresh checkout, at a time limit: submitted when the cluster is up and
    run beside the other tests (it waits on SLURM's clock more than it computes); the last test checks it.

    slurmctld sends the script's --signal=TERM@120 at the first of its time-limit checks (every CHECK_PERIOD s
    from its start) that finds at most WARNING + CHECK_PERIOD seconds left (measured here). The job is submitted
    with a long limit. Once its run has written config.yaml (from then on its stop handlers are in place; a
    signal before would kill a process still starting), the job waits for the next check suspended (stopped:
    no CPU, rather than training for up to 30 s), runs again RUNS_BEFORE_CHECK s before it, and its limit is
    cut to the whole minutes that leave 90-150 s at that check: the signal comes at the check, while the run
    trains, and the time limit a minute or more later."""

    EPOCHS, BATCHES = 3, 50  # 16 s of training on one core here; the signal came at step 45-50, 4-5 s in
    LIMIT = 10  # minutes, at submission and for the requeued run
    RUNS_BEFORE_CHECK = 3

    def __init__(self, slurm, sample_root, folder: Path):
        super().__init__(daemon=True)
        self.slurm, self.clone = slurm, fresh_checkout(folder)
        self.overrides = ["data=sample", f"data.root={sample_root}", f"trainer.epochs={self.EPOCHS}",
                          f"trainer.limit_train_batches={self.BATCHES}", *TINY]
        self.job, self.error = "", None
        self.deadline = time.time() + 480

    def run(self):
        try:
            # the script asks for 8 GPUs a node: this node has none, one process on the CPU
            submitted = run(["sbatch", "--parsable", "--nodes=1", "--gpus-per-node=0", "--cpus-per-task=1",
                             f"--time={self.LIMIT}", "scripts/slurm_train.sbatch", *self.overrides], self.slurm,
                            self.clone, extra_env={"GPUS_PER_NODE": "1"})
            assert submitted.returncode == 0, submitted.stderr
            self.job = submitted.stdout.strip().split(";")[0]
            wait_for(self.clone / "runs" / f"slurm-{self.job}" / "config.yaml", self.deadline, "the run to start")
            scontrol(self.slurm, "suspend", self.job)
            check = self.next_check(time.time() + self.RUNS_BEFORE_CHECK + 1)
            time.sleep(max(0.0, check - self.RUNS_BEFORE_CHECK - time.time()))
            scontrol(self.slurm, "resume", self.job)
            self.cut_time_limit(check)
            # the script requeues the stopped run; SLURM gives a requeued job its time limit again (here ten
            # minutes, so that the continued run is not signalled too)
            release_when_requeued(self.slurm, self.job, self.deadline, TimeLimit=self.LIMIT)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def next_check(self, after: float) -> float:
        """slurmctld's first time-limit check after `after`."""
        started = float((Path(self.slurm["SLURM_CONF"]).parent / "slurmctld.started").read_text())
        return started + CHECK_PERIOD * ((after - started) // CHECK_PERIOD + 1)

    def cut_time_limit(self, check: float) -> None:
        """A limit counts from the job's start plus the time it was suspended: EndTime less the limit."""
        end = datetime.fromisoformat(job_field(self.slurm, self.job, "EndTime")).timestamp()
        minutes = int((check - (end - 60 * self.LIMIT) + WARNING + CHECK_PERIOD) // 60)
        scontrol(self.slurm, "update", f"JobId={self.job}", f"TimeLimit={minutes}")


@pytest.fixture(scope="module", autouse=True)
def time_limited_job(request, tmp_path_factory, sample_root):
    if not any(item.name == TIME_LIMITED for item in request.session.items):
        yield None
        return
    slurm = request.getfixturevalue("slurm")
    job = TimeLimitedJob(slurm, sample_root, tmp_path_factory.mktemp("time_limited"))
    job.start()
    yield job


def test_the_sbatch_script_from_a_fresh_checkout_continues_itself_after_a_time_limit(slurm, time_limited_job):
    t = time_limited_job
    t.join(timeout=max(1.0, t.deadline - time.time()))
    if t.error:
        raise t.error
    job, run_dir, out = t.job, t.clone / "runs" / f"slurm-{t.job}", t.clone / f"slurm-{t.job}.out"
    state = final_state(slurm, job, t.deadline)
    printed = out.read_text()
    assert state == "COMPLETED", printed[-3000:]
    assert "requeueing job" in printed and job_field(slurm, job, "Restarts") == "1", printed[-3000:]
    stopped = re.search(r"stopped at epoch \d+, step (\d+): wrote \S+last\.pt; continue with: (.*)", printed)
    assert stopped and 0 < int(stopped[1]) < t.EPOCHS * t.BATCHES, printed[-3000:]
    # the hint is the command the script ran: the launcher with its flags, each override once
    hint = stopped[2]
    assert hint.startswith(f"python -m googlenet.cli.launch --nnodes=1 --nproc_per_node=1 --rdzv_id={job} "), hint
    assert hint.count("data.workers=") == 1 and all(hint.count(o) == 1 for o in t.overrides), hint
    assert hint.endswith(f"resume=auto hydra.run.dir={run_dir}"), hint
    assert f"resumed from {run_dir}/checkpoints/last.pt" in printed and "launcher: stopped by SIGTERM" in printed
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "completed"
    assert steps_of(run_dir / "checkpoints" / "last.pt") == t.EPOCHS * t.BATCHES
