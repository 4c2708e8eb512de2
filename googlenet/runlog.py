"""What a run tells the outside world: console and train.log lines, TensorBoard events, tqdm bars.

Only rank 0 writes; on other ranks every method is a no-op.
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


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool = True, progress="auto", tensorboard: bool = True):
        self.enabled = enabled
        self.progress = (sys.stderr.isatty() if progress == "auto" else bool(progress)) and enabled
        self.logger = logging.getLogger(f"googlenet.run.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.writer = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(logging.Formatter("%(message)s"))
        self.console = console
        logfile = logging.FileHandler(run_dir / "train.log")
        logfile.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        self.logger.addHandler(console)
        self.logger.addHandler(logfile)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir=str(run_dir))

    def set_console(self, on: bool) -> None:
        """Turn the terminal output off (tools that print their own lines) or back on; train.log is kept."""
        if self.enabled:
            self.console.setLevel(logging.INFO if on else logging.CRITICAL + 1)

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
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)
