"""Helpers shared by the tests: image and dataset makers, tiny training overrides, running the scripts."""
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = ROOT.parent / "shared" / "data" / "imagenet-sample"


def make_image(path: Path, size=(80, 60), colour=None, mode="RGB", fmt="JPEG", seed=0):
    rng = random.Random(seed)
    colour = colour or tuple(rng.randint(0, 255) for _ in range(3))
    img = Image.new("RGB", size, colour)
    for _ in range(20):  # some structure, so crops and resizes differ
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        img.paste(tuple(rng.randint(0, 255) for _ in range(3)), (x, y, min(size[0], x + 9), min(size[1], y + 9)))
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)
    return path


def make_folder(root: Path, classes=("n01", "n02", "n03"), per_class=4, splits=("train", "val"), size=(80, 60)):
    for split in splits:
        for c, name in enumerate(classes):
            for i in range(per_class):
                make_image(root / split / name / f"{name}_{i}.JPEG", size=size,
                           seed=1000 * splits.index(split) + 100 * c + i)
    return root


def tiny_overrides(data_root, run_dir, *extra):
    """A GoogLeNet run on a 3-class folder at 32 px: a few seconds per epoch on a CPU."""
    return [
        "data.root=" + str(data_root), "data.num_classes=3", "data.crop_size=32", "data.eval_resize=36",
        "data.batch_size=2", "data.workers=0", "runtime.device=cpu", "trainer.progress=false",
        "trainer.log_every=1", "schedule.warmup_epochs=0", "hydra.run.dir=" + str(run_dir), *extra,
    ]


def run_script(script, *args, timeout=300, env=None, cwd=ROOT):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=full_env)


def photo(path: Path, size=(800, 600)) -> Path:
    """A smooth, photo-like JPEG (bicubic upsampling of random colours)."""
    import torch
    g = torch.Generator().manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 32, generator=g), size=(size[1], size[0]),
                                           mode="bicubic")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((base[0].permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy()).save(path, quality=95)
    return path


def installed(module: str) -> bool:
    """Whether an optional extra is importable (find_spec raises when a parent package is missing)."""
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def wait_until(condition, deadline: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Until `condition()` holds: fails at `deadline` (time.time()), or when `proc` (if given) has ended before."""
    while not condition():
        assert proc is None or proc.poll() is None, proc.stdout.read() if proc.stdout else f"{what}: it ended"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def wait_for(path: Path, deadline: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Until `path` exists (see wait_until)."""
    wait_until(path.exists, deadline, f"{what} ({path})", proc)
