"""What a run tells the outside world: console and train.log lines, TensorBoard events, tqdm bars.

Only rank 0 writes; on other ranks every method is a no-op. Inside a Hydra job the lines go through
Python logging as Hydra's `hydra/job_logging` configures it (terminal + `<run dir>/train.log` by default);
when the trainer is used without Hydra (tests, tools) the run log adds those two handlers itself.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from tqdm import tqdm


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s, refresh=True):
        pass

    def close(self):
        pass


def _inside_hydra_job() -> bool:
    from hydra.core.hydra_config import HydraConfig
    return HydraConfig.initialized()


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool = True, progress="auto", tensorboard: bool = True):
        self.enabled = enabled
        self.progress = (sys.stderr.isatty() if progress == "auto" else bool(progress)) and enabled
        self.logger = logging.getLogger(f"googlenet.run.{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.run_dir = run_dir
        self.tensorboard = tensorboard and enabled
        self._writer = None
        if not enabled:
            return
        self.logger.propagate = _inside_hydra_job()
        if not self.logger.propagate:
            console = logging.StreamHandler(sys.stdout)
            console.setFormatter(logging.Formatter("%(message)s"))
            run_dir.mkdir(parents=True, exist_ok=True)
            logfile = logging.FileHandler(run_dir / "train.log", delay=True)  # created with the first line
            logfile.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
            self.logger.addHandler(console)
            self.logger.addHandler(logfile)

    @property
    def writer(self):
        """The TensorBoard writer, made on first use (a run that fails at start leaves no event file)."""
        if self._writer is None and self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.run_dir))
        return self._writer

    def info(self, message: str) -> None:
        if self.enabled:
            self.logger.info(message)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def images(self, tag: str, grid, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, grid, step)

    def hparams(self, hparams: dict, metrics: dict, step: int) -> None:
        """Hyperparameters with final metrics, in the run's own event file (add_hparams would start another)."""
        if self.writer is not None:
            from torch.utils.tensorboard.summary import hparams as hparams_summary
            for summary in hparams_summary(hparams, metrics):
                self.writer.file_writer.add_summary(summary)
            self.scalars(metrics, step)

    def bar(self, total: int, desc: str, initial: int = 0, leave: bool = False):
        if not self.progress:
            return _NoBar()
        return tqdm(total=total, desc=desc, initial=initial, leave=leave, dynamic_ncols=True, unit="batch")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.tensorboard = False
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)
