"""The signals that stop a job: what schedulers (SLURM's --signal, torchrun, submitit's preemption signal USR2)
and terminals send.

The training process handles them (`googlenet.training.stopping`); loader workers ignore them
(`data.loaders.ignore_stop_signals`), so that the main process can write its checkpoint first. A handler that
was there before the trainer's (submitit's, which requeues the job on USR2) gets the signal once the stop is
saved (`hand_on`).
"""
import contextlib
import signal

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2")
                     if hasattr(signal, name))


def hand_on(signum: int | None) -> None:
    """After a stop the signal `signum` asked for is saved: the handler installed now (the launcher's own, once
    the trainer's is gone) gets it too. Default and ignore dispositions are left alone (they would end or do
    nothing); submitit's requeues the job and exits."""
    if signum is None:
        return
    handler = signal.getsignal(signum)
    if callable(handler):
        handler(signum, None)


@contextlib.contextmanager
def stop_signals_blocked():
    """Stop signals held back (not lost) in this thread: loader workers forked here start with them blocked,
    so that one sent to the whole process group while they start cannot kill them before they ignore it
    (`data.loaders.ignore_stop_signals` then unblocks them); here they are delivered when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
