"""The Hydra callback named in configs/train.yaml (`hydra.callbacks`).

- `AgreedLaunchTime`: under torchrun, `${now:...}` is the launcher's start time, the same for every rank of
  the node and across elastic restarts, so the default run directory is one directory (and a restarted job
  finds its last.pt).
- `OneSacctWarning`: on a cluster that keeps no accounting, submitit's status polls (`sacct`) fail and it logs
  a warning per poll (at 0, 2, 4, 8, ... s, then every minute); the sweep shows one line instead.
"""
from __future__ import annotations

import logging

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..distributed import launch_time, launched_by_torchrun


def agree_on_now() -> None:
    """`${now:...}` resolves to this job's launch time (`distributed.launch_time`): under torchrun the same for
    every rank of a node and across restarts. The one place the resolver is registered."""
    started = launch_time()
    OmegaConf.register_new_resolver("now", lambda pattern: started.strftime(pattern), use_cache=True, replace=True)


class AgreedLaunchTime(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if launched_by_torchrun():
            agree_on_now()


SACCT_FAILED = "Bypassing sacct error"


class _FirstSacctFailureOnly(logging.Filter):
    def __init__(self):
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if SACCT_FAILED not in record.getMessage():
            return True
        if self.seen:
            return False
        self.seen = True
        record.msg, record.args = ("sacct fails on this cluster (no accounting): submitit waits for each job's "
                                   "result file instead; this warning is not repeated"), ()
        return True


class OneSacctWarning(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        submitit = logging.getLogger("submitit")
        if not any(isinstance(f, _FirstSacctFailureOnly) for f in submitit.filters):
            submitit.addFilter(_FirstSacctFailureOnly())
