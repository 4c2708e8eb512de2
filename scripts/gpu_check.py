"""The GPU acceptance check: every path that only a GPU runs, in one command, in a few minutes.

    python scripts/gpu_check.py [--device cuda|cpu] [--photos DIR] [--output gpu_check.json] [--parts a,b,...]

Parts (each passes, fails, or is skipped with a line saying why; the exit status is 1 when any part failed):
  a  host syncs: training steps of inception_v1 with the paper's recipe (photometric distortions, lighting,
     EMA, aux heads) and of inception_v3, from the PIL and the DALI loader, watched after warm-up
     (torch.cuda.set_sync_debug_mode("warn") on CUDA, recorded operators on the CPU): zero, else the lines
  b  speed: images/s of the training step (synthetic data, bf16, channels_last; with and without
     runtime.compile; batch 256 for v1, 128 for v3) beside the reference loop (scripts/benchmark.py), of
     each loader, and what DALI pays per epoch to build its pipeline (scripts/benchmark_data.py)
  c  a run resumed in another precision: fp16 from a bf16 checkpoint (on the CPU: fp32 from bf16)
  d  evaluate.py crops=all on the device: images/s, and the same top-1/top-5 as on the CPU (within TOLERANCE)
  e  export to ONNX and pt2 from the checkpoint trained on the device
  f  two processes under torchrun (NCCL on GPUs, gloo on the CPU) stopped during validation: both exit 0,
     last.pt intact (on CUDA it needs two GPUs)

It installs nothing: a part whose dependency is missing (DALI, onnx) is skipped with a line. `--device cpu`
runs everything at small sizes; CI runs it that way so that it works the day a GPU is lent. The photos are
the ImageNet sample photos (../shared/data/imagenet-sample) when present, else the embedded sample set.
Writes a JSON report (atomically) and prints a table.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from common.files import write_atomic  # noqa: E402
from common.host_syncs import HostSyncWatch  # noqa: E402

TOLERANCE = 0.5  # percentage points of top-1/top-5 between the device's and the CPU's evaluation
SHARED_PHOTOS = ROOT.parent / "shared" / "data" / "imagenet-sample"


class Skip(Exception):
    """A part that cannot run here (a missing dependency, too few GPUs): the reason is reported."""


class Check:
    """Sizes and folders for one device; each part adds its record to `results`."""

    def __init__(self, device: str, work: Path, photos: Path | None):
        self.device, self.work = device, work
        self.cuda = device == "cuda"
        self.results: list[dict] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.photos = photos
        self.data = self.training_folder()

    # --- sizes: the real ones on a GPU, the smallest that exercise each path on the CPU
    def size(self, model: str) -> int:
        return (299 if "v3" in model else 224) if self.cuda else (75 if "v3" in model else 64)

    def batch(self, model: str) -> int:
        return (128 if "v3" in model else 256) if self.cuda else 4

    def training_folder(self) -> Path:
        """A train/val ImageFolder: the sample photos (one per class, five classes each split), or the
        embedded sample set."""
        if self.photos is None:
            from data.sample import ensure_sample_data
            return ensure_sample_data()
        root = self.work / "photos"
        files = sorted(p for p in self.photos.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        for i, path in enumerate(files):
            split, label = ("val" if i // 5 % 5 == 4 else "train"), f"class_{i % 5}"
            (root / split / label).mkdir(parents=True, exist_ok=True)
            (root / split / label / path.name).symlink_to(path)
        return root

    def run(self, *args, timeout=600, env=None) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                              env={**self.env, **(env or {})}, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"{Path(str(args[0])).name} exited {done.returncode}: "
                                 f"{(done.stderr or done.stdout).strip()[-1500:]}")
        return done

    def train_overrides(self, model: str, run_dir: Path, batch: int, *extra) -> list[str]:
        return [f"model={model}", "data=folder", f"data.root={self.data}", f"data.crop_size={self.size(model)}",
                f"data.eval_resize={int(self.size(model) * 1.14)}", f"data.batch_size={batch}",
                f"runtime.device={self.device}", "trainer.progress=false", "trainer.log_images=false",
                "schedule.warmup_epochs=0", f"hydra.run.dir={run_dir}", *extra]


def part_a_host_syncs(c: Check) -> dict:
    from googlenet.cli.config import compose_config
    from googlenet.training.trainer import Trainer
    warmup, watched = 2, 3
    found, skipped = {}, []
    for model, recipe in [("inception_v1", ["experiment=googlenet_paper"]), ("inception_v3", [])]:
        for loader in ("pil", "dali"):
            if loader == "dali" and not importlib.util.find_spec("nvidia.dali"):
                skipped.append(f"{model}/dali: DALI is not installed (pip install -r requirements-dali.txt)")
                continue
            run_dir = c.work / f"syncs-{model}-{loader}"
            cfg = compose_config("train", [*recipe, *c.train_overrides(model, run_dir, c.batch(model)),
                                           f"data.loader={loader}",
                                           "data.workers=2", "trainer.epochs=1", "trainer.log_every=1000000",
                                           f"trainer.limit_train_batches={warmup + watched + 1}"])
            trainer = Trainer(cfg)
            watch = HostSyncWatch(c.device)

            def window(t, watch=watch):  # steps warmup+1 .. warmup+watched; the epoch's last step logs
                if t.state.step == warmup:
                    watch.start()
                elif t.state.step == warmup + watched:
                    watch.stop()
            trainer.hooks["step"].append(window)
            try:
                with trainer.stop:
                    trainer.train_epoch()
            finally:
                watch.stop()
                trainer.close(started=False)
            found[f"{model}/{loader}"] = watch.offenders
    bad = {k: v for k, v in found.items() if v}
    status = "fail" if bad else "pass"
    return {"status": status, "watched_steps": watched, "syncs": found, "skipped": skipped,
            "summary": (f"syncs in {', '.join(bad)}: {sum(map(len, bad.values()))}" if bad else
                        f"0 syncs in {watched} steps each of {', '.join(found)}") +
                       (f"; skipped {'; '.join(skipped)}" if skipped else "")}


def part_b_speed(c: Check) -> dict:
    out = c.work / "speed.jsonl"
    steps = ["--steps", "10", "--repeats", "3"] if c.cuda else ["--steps", "2", "--repeats", "1"]
    for model in ("inception_v1", "inception_v3"):
        for compile_ in ("false", "true") if c.cuda else ("false",):
            # the reference (torchvision's inception_v3 with its aux head) needs 299 px
            size, batch = (299, min(c.batch(model), 2)) if "v3" in model else (c.size(model), c.batch(model))
            overrides = [f"model={model}", f"runtime.device={c.device}", "runtime.precision=bf16",
                         "runtime.channels_last=true", f"runtime.compile={compile_}",
                         f"data.batch_size={batch}", f"data.crop_size={size}"]
            c.run(ROOT / "scripts" / "benchmark.py", *overrides, "--modes", "train", *steps, "--output", out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    loaders = ["pil", "dali"] if importlib.util.find_spec("nvidia.dali") else ["pil"]
    data = c.run(ROOT / "scripts" / "benchmark_data.py", c.data / "train", "--loader", ",".join(["torchvision",
                 *loaders]), "--device", c.device, "--json", "--epochs", "1" if not c.cuda else "3",
                 "--batch-size", str(c.batch("inception_v1") // 4), "--size", str(c.size("inception_v1")),
                 "--workers", str(min(8, os.cpu_count() or 1)),
                 *(["--dali-rebuild", "1281167"] if "dali" in loaders else []))
    measured = [json.loads(line) for line in data.stdout.splitlines() if line.startswith("{")]
    pipelines = [m for m in measured if "pipeline" in m]
    rebuild = [m for m in measured if m.get("measure") == "dali_rebuild"]
    ours = [f"{r['model']}{' compiled' if r['compile'] else ''} {r['ours_images_per_sec']:.0f}/s "
            f"(reference {r['reference_images_per_sec']:.0f}/s)" for r in lines]
    rebuilt = (f" | DALI pipeline over ImageNet's 1,281,167 files: {rebuild[0]['build_seconds']:.1f} s to build, "
               f"{rebuild[0]['first_batch_seconds']:.1f} s to the first batch" if rebuild else "")
    return {"status": "pass", "train": lines, "loaders": pipelines, "dali_rebuild": rebuild,
            "summary": "; ".join(ours) + " | loaders: " + ", ".join(
                f"{p['pipeline']} {p['images_per_sec']:.0f}/s" for p in pipelines) + rebuilt}


def part_c_resume_precision(c: Check) -> dict:
    first, then = ("bf16", "fp16") if c.cuda else ("bf16", "32")
    run_dir = c.work / "resume"
    common = c.train_overrides("inception_v1", run_dir, 32 if c.cuda else 4, "trainer.limit_train_batches=3",
                               "trainer.limit_val_batches=2")
    c.run(ROOT / "train.py", *common, "trainer.epochs=1", f"runtime.precision={first}")
    c.run(ROOT / "train.py", *common, "trainer.epochs=2", f"runtime.precision={then}", "resume=auto")
    log = (run_dir / "train.log").read_text()
    assert "resumed from" in log and "epoch 2/2" in log, log[-1500:]
    return {"status": "pass", "summary": f"{first} checkpoint resumed in {then}, epoch 2 trained", "run_dir":
            str(run_dir)}


def part_d_evaluate(c: Check) -> dict:
    ckpt = c.work / "resume" / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise Skip("needs part c's checkpoint")
    reports = {}
    for device in dict.fromkeys([c.device, "cpu"]):
        output = c.work / f"eval-{device}.json"
        c.run(ROOT / "evaluate.py", f"ckpt={ckpt}", "crops=all", f"runtime.device={device}",
              "runtime.precision=32", "data.batch_size=2", "limit_batches=4", f"output={output}")
        reports[device] = json.loads(output.read_text())
    rows = {d: {(r["models"], r["crops"]): (r["top1_error"], r["top5_error"]) for r in rep["table"]}
            for d, rep in reports.items()}
    worst = max(abs(a - b) for key, values in rows[c.device].items() for a, b in zip(values, rows["cpu"][key]))
    status = "pass" if worst <= TOLERANCE else "fail"
    speed = reports[c.device].get("images_per_sec")
    return {"status": status, "largest_difference": worst, "tolerance": TOLERANCE, "reports": reports,
            "summary": f"top-1/top-5 within {worst:.2f} points of the CPU's (tolerance {TOLERANCE}); "
                       f"{speed or 0:.1f} images/s with 144 crops on {c.device}"}


def part_e_export(c: Check) -> dict:
    ckpt = c.work / "resume" / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise Skip("needs part c's checkpoint")
    made, skipped = [], []
    for fmt, needs in (("onnx", "onnx"), ("pt2", None)):
        if needs and not importlib.util.find_spec(needs):
            skipped.append(f"{fmt}: {needs} is not installed (pip install -r requirements-export.txt)")
            continue
        output = c.work / f"model.{fmt}"
        c.run(ROOT / "export.py", f"ckpt={ckpt}", f"format={fmt}", f"output={output}", f"runtime.device={c.device}")
        assert output.is_file() and output.stat().st_size > 0, f"{output} was not written"
        made.append(fmt)
    return {"status": "pass", "summary": f"exported {', '.join(made)}" + (f"; skipped {'; '.join(skipped)}"
                                                                           if skipped else "")}


def part_f_stop_in_validation(c: Check) -> dict:
    if c.cuda and torch.cuda.device_count() < 2:
        raise Skip(f"needs two GPUs ({torch.cuda.device_count()} here)")
    run_dir = c.work / "ddp"
    last = run_dir / "checkpoints" / "last.pt"
    args = ["-m", "googlenet.cli.launch", "--standalone", "--nproc_per_node=2", "train.py",
            *c.train_overrides("inception_v1", run_dir, 32 if c.cuda else 4, "ema.enabled=true", "trainer.epochs=2",
                               "trainer.limit_train_batches=2", "data.workers=1")]
    with open(c.work / "ddp.out", "w") as out:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=c.env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.time() + 300
        while not last.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # last.pt is written just before validation starts
        try:
            proc.wait(timeout=300)
        finally:
            proc.kill()
    printed = (c.work / "ddp.out").read_text()
    assert proc.returncode == 0, printed[-1500:]
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["epoch"] >= 1 and "launcher: stopped by SIGTERM; all 2 worker(s)" in printed, printed[-1500:]
    return {"status": "pass", "summary": f"both ranks stopped and exited 0; last.pt at epoch {state['epoch']}, "
                                         f"step {state['step']}"}


PARTS = {"a": part_a_host_syncs, "b": part_b_speed, "c": part_c_resume_precision, "d": part_d_evaluate,
         "e": part_e_export, "f": part_f_stop_in_validation}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--photos", type=Path, default=SHARED_PHOTOS if SHARED_PHOTOS.is_dir() else None,
                   help="a folder of JPEG photos (default: the ImageNet sample photos when present)")
    p.add_argument("--parts", default="a,b,c,d,e,f")
    p.add_argument("--output", type=Path, default=Path("gpu_check.json"))
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --device cpu", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    started = time.time()
    try:
        check = Check(args.device, work, args.photos)
        for key in args.parts.split(","):
            part = PARTS[key.strip()]
            t0 = time.time()
            try:
                record = part(check)
            except Skip as e:
                record = {"status": "skip", "summary": str(e)}
            except Exception as e:  # noqa: BLE001 - a failed part is reported, the others still run
                record = {"status": "fail", "summary": f"{type(e).__name__}: {str(e).strip()[-1500:]}",
                          "traceback": traceback.format_exc()[-3000:]}
            record.update(part=key, name=part.__name__[7:], seconds=round(time.time() - t0, 1))
            check.results.append(record)
            print(f"{key} {record['name']:<22} {record['status']:<5} {record['seconds']:>6.1f}s  "
                  f"{record['summary']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    report = {"device": args.device, "device_name": device_name, "gpus": torch.cuda.device_count(),
              "torch": torch.__version__, "seconds": round(time.time() - started, 1), "parts": check.results}
    write_atomic(args.output, json.dumps(report, indent=2, default=str) + "\n")
    failed = [r["part"] for r in check.results if r["status"] == "fail"]
    print(f"{len(check.results)} part(s) in {report['seconds']:.0f} s on {device_name}: "
          f"{'failed: ' + ', '.join(failed) if failed else 'no failure'}; report: {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
