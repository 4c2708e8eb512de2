"""The signals that stop a job: what schedulers (SLURM's --signal, torchrun) and terminals send.

The training process handles them (`googlenet.training.stopping`); loader workers ignore them
(`data.loaders.ignore_stop_signals`), so that the main process can write its checkpoint first.
"""
import signal

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name))
