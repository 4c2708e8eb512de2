"""Hydra callbacks named in configs/train.yaml (`hydra.callbacks`).

- `AgreedLaunchTime`: under torchrun, `${now:...}` is the launcher's start time, the same for every rank of
  the node and across elastic restarts, so the default run directory is one directory (and a restarted job
  finds its last.pt).
- `SweepSummary`: after a multirun, one line per job (status, final metrics, run dir), read back from the
  `result.json` each job wrote, so it works with any launcher (jobs may run in other processes or hosts).
"""
from __future__ import annotations

import json
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..distributed import launch_time, launched_by_torchrun

RESULT_FILE = "result.json"


def agree_on_now() -> None:
    """`${now:...}` resolves to this job's launch time (`distributed.launch_time`): under torchrun the same for
    every rank of a node and across restarts. The one place the resolver is registered."""
    started = launch_time()
    OmegaConf.register_new_resolver("now", lambda pattern: started.strftime(pattern), use_cache=True, replace=True)


class AgreedLaunchTime(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if launched_by_torchrun():
            agree_on_now()


def summary_lines(sweep_dir: Path) -> list[str]:
    records = []
    for path in sweep_dir.rglob(RESULT_FILE):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    records.sort(key=lambda r: r.get("job", 0))
    shared = set.intersection(*(set(r.get("overrides") or []) for r in records)) if len(records) > 1 else set()
    lines = []
    for r in records:
        overrides = " ".join(o for o in r.get("overrides") or [] if o not in shared) or "(no overrides)"
        if r.get("status") == "failed":
            outcome = f"failed: {r.get('error')}"
        else:
            metrics = r.get("metrics") or {}
            shown = [f"{k} {metrics[k]:.2f}" for k in ("val_top1", "val_top5", "val_ema_top1") if k in metrics]
            value = r.get("value")
            best = f"best {r.get('metric')} {value:.2f}" if isinstance(value, int | float) else "no validation"
            outcome = ", ".join([r.get("status", "?"), *shown, best])
        lines.append(f"job {r.get('job')} {overrides}: {outcome} | {r.get('run_dir')}")
    return lines


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        lines = summary_lines(sweep_dir)
        if lines:
            print(f"sweep summary ({len(lines)} job(s), {sweep_dir}):")
            for line in lines:
                print(f"  {line}")
