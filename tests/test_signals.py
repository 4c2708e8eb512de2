import os
import signal
import subprocess
import sys
import time

from helpers import ROOT, tiny_overrides

from googlenet.checkpoint import load_checkpoint
from googlenet.cli.config import compose_config
from googlenet.training.trainer import train


def test_sigterm_to_the_process_group_writes_a_checkpoint_and_resume_finishes(tmp_path, tiny_folder):
    # SIGTERM to the whole group, loader workers included (SLURM's --signal, a terminal's job control)
    common = tiny_overrides(tiny_folder, tmp_path / "run", "trainer.limit_val_batches=1", "data.workers=2")
    args = [*common, "trainer.epochs=400"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = tmp_path / "run" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not log.exists() and time.time() < deadline:  # wait for the first epoch to finish
        time.sleep(0.2)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped at epoch" in out
    hint = out[out.index("continue with: "):].splitlines()[0]  # the real command: this run's overrides + resume
    assert hint.startswith("continue with: python train.py ") and "trainer.epochs=400" in hint
    assert hint.endswith(f"resume=auto hydra.run.dir={tmp_path / 'run'}")
    state = load_checkpoint(log)
    assert 1 <= state["epoch"] < 400
    assert "DataLoader worker" not in out
    finish = train(compose_config("train", [*common, "trainer.epochs=" + str(state["epoch"] + 1), "resume=auto"]))
    assert finish.exit_code == 0
    assert load_checkpoint(log)["epoch"] == state["epoch"] + 1


def test_submitits_preemption_signal_saves_first_then_reaches_submitits_handler(tmp_path, tiny_folder, monkeypatch):
    # submitit asks for USR2 before a time limit or a preemption, and its handler requeues the job and exits at
    # once: the trainer takes USR2 like SIGTERM (an agreed stop, last.pt), then hands it on to that handler
    from common.signals import hand_on
    from googlenet.training import trainer as trainer_module
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    requeued = []

    def submitits_handler(signum, frame):  # stands in for submitit's checkpoint_and_try_requeue
        requeued.append(load_checkpoint(last)["step"])

    class PreemptedAtStep2(trainer_module.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.hooks["step"].append(lambda t: os.kill(os.getpid(), signal.SIGUSR2) if t.state.step == 2 else None)
    monkeypatch.setattr(trainer_module, "Trainer", PreemptedAtStep2)
    previous = signal.signal(signal.SIGUSR2, submitits_handler)
    try:
        result = train(compose_config("train", tiny_overrides(tiny_folder, tmp_path / "run", "trainer.epochs=5")))
        assert result.status == "stopped" and result.stop_signal == signal.SIGUSR2 and requeued == []
        hand_on(result.stop_signal)  # what the command does once the run's records are written
        assert requeued == [2]  # the handler ran after last.pt held step 2
    finally:
        signal.signal(signal.SIGUSR2, previous)
    hand_on(signal.SIGTERM)  # a default disposition is left alone: this process goes on


def _terminated_while_starting(worker_id):
    os.kill(os.getpid(), signal.SIGTERM)  # a SIGTERM to the process group while this worker starts
    from data.loaders import ignore_stop_signals
    ignore_stop_signals(worker_id)


def test_a_stop_signal_while_loader_workers_start_does_not_kill_them():
    # the workers are forked with the stop signals blocked: the one that arrives before a worker ignores them
    # is discarded, not fatal (it once killed a validation worker: "DataLoader worker ... killed by signal")
    from torch.utils.data import DataLoader

    from common.signals import stop_signals_blocked
    loader = DataLoader(list(range(4)), batch_size=2, num_workers=2, worker_init_fn=_terminated_while_starting)
    with stop_signals_blocked():
        batches = iter(loader)
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3]]
