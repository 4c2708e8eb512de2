"""Shared helpers for the training and evaluation tests."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tiny_overrides(data_root, run_dir, *extra):
    """A GoogLeNet run on a 3-class folder at 32 px: a few seconds per epoch on a CPU."""
    return [
        "data.root=" + str(data_root), "data.num_classes=3", "data.crop_size=32", "data.eval_resize=36",
        "data.batch_size=2", "data.workers=0", "trainer.device=cpu", "trainer.progress=false",
        "trainer.log_every=1", "schedule.warmup_epochs=0", "hydra.run.dir=" + str(run_dir), *extra,
    ]


def run_script(script, *args, timeout=300, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=full_env)
