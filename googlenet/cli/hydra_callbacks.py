"""The Hydra callback named in configs/train.yaml (`hydra.callbacks`).

- `AgreedLaunchTime`: under torchrun, `${now:...}` is the launcher's start time, the same for every rank of
  the node and across elastic restarts, so the default run directory is one directory (and a restarted job
  finds its last.pt).
"""
from __future__ import annotations

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
