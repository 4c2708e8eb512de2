"""Training and evaluation speed of our loop against a plain PyTorch reference loop.

    python scripts/benchmark.py model=inception_v1 runtime.device=cuda runtime.precision=bf16 \\
        data.batch_size=256 [--steps 50] [--repeats 3] [--folder ROOT] [--modes train,eval1,eval144]

Arguments `key=value` are train.py overrides (the same configs); `--` options control the benchmark.

Measurements (each a JSON line, appended to --output when given):
- train_synthetic: images/s of a full training step (forward with aux heads, loss, backward, optimizer
  step, EMA if enabled) on random data made on the device, through our training step (googlenet.training.step.TrainStep,
  built and called as the Trainer does, with its device-side meters read once per log interval), and through
  the reference:
  torchvision's googlenet / inception_v3 in a plain loop as in torchvision's reference classification
  script (float input, `loss.item()` every step), same device, batch and precision; the ratio of the two;
  and the reference again in channels_last without its per-step `loss.item()`, and that ratio, so that the
  two ratios say how much of a difference is memory format and host syncs and how much the rest.
- train_folder (with --folder): images/s end to end from JPEG files (our pipeline vs ImageFolder +
  RandomResizedCrop + flip + ToTensor + Normalize in a DataLoader with the same workers), and our data-wait
  fraction.
- eval1 / eval144: evaluation images/s with 1 and 144 crops per image, as evaluate.py runs them on a GPU: the
  144 views cut and resized on the device from each decoded 500 x 375 image, then the forward passes
  (decoding is measured by train_folder and scripts/benchmark_data.py). The reference forwards ready crops.
Timings exclude warm-up (compilation, cudnn autotuning) and are medians over --repeats, with the device
synchronised around each timed region. Model FLOP utilisation = achieved FLOP/s / the device's peak
(stated; pass --peak-tflops for devices not in the table). Training FLOPs are taken as 3x the forward pass
(with aux heads), counted by torch.utils.flop_counter.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from common.errors import UserError  # noqa: E402
from data.loaders import build_data  # noqa: E402
from data.multicrop import Decoded, Geometry, cut_on_device  # noqa: E402
from googlenet.cli.config import compose_config  # noqa: E402
from googlenet.distributed import DistEnv  # noqa: E402
from googlenet.models.registry import build_from_config, build_model, model_options  # noqa: E402
from googlenet.runtime import PRECISIONS, build_runtime, resolve_device  # noqa: E402
from googlenet.training.meters import DeviceMeters  # noqa: E402
from googlenet.training.position import Position  # noqa: E402
from googlenet.training.step import TRAIN_METERS, TrainStep  # noqa: E402

# Dense peak TFLOP/s by device name fragment: (bf16/fp16 tensor cores, tf32 tensor cores, plain fp32).
PEAK_TFLOPS = {
    # H100 NVL per GPU (NVIDIA's datasheet halves its sparse 1,671 / 835 TFLOP/s): before "H100", which it contains
    "H100 NVL": (835.5, 417.5, 60.0),
    "H100 SXM": (989.0, 494.0, 67.0), "H100 PCIe": (756.0, 378.0, 51.0), "H100": (989.0, 494.0, 67.0),
    "H200": (989.0, 494.0, 67.0), "A100": (312.0, 156.0, 19.5), "L4": (121.0, 60.0, 30.3),
    "A10": (125.0, 62.5, 31.2), "V100": (125.0, 15.7, 15.7), "RTX 4090": (165.0, 82.6, 82.6),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, warmup: int, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` runs after `warmup` untimed runs."""
    return timed_pair(fn, None, device, warmup, repeats)[0]


def timed_pair(ours, reference, device, warmup: int, repeats: int) -> tuple[float, float]:
    medians = timed_all([f for f in (ours, reference) if f is not None], device, warmup, repeats)
    return medians[0], medians[1] if len(medians) > 1 else None


def timed_all(fns, device, warmup: int, repeats: int) -> list[float]:
    """Median seconds of each function, their timed runs interleaved so that drift in the machine's speed
    (other tenants, clocks) falls on all alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            bucket.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def peak_tflops(device: torch.device, precision: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, f"{override} TFLOP/s (given)"
    if device.type != "cuda":
        return None, "unknown for CPUs (pass --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    for key, (half, tf32, _fp32) in PEAK_TFLOPS.items():
        if key in name:
            value = half if precision in ("bf16", "fp16") else tf32
            kind = "bf16/fp16" if precision in ("bf16", "fp16") else "tf32"
            return value, f"{value} TFLOP/s dense {kind} ({name})"
    return None, f"unknown for {name} (pass --peak-tflops)"


def train_flops_per_image(model: torch.nn.Module, size: int, device) -> float:
    """3 x the forward FLOPs of one image in training mode (aux heads included)."""
    was = model.training
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(2, 3, size, size, device=device))
    model.train(was)
    return 3 * counter.get_total_flops() / 2


def eval_flops_per_crop(model: torch.nn.Module, size: int, device) -> float:
    was = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size, device=device))
    model.train(was)
    return counter.get_total_flops()


# ----------------------------------------------------------------------------------------- the reference

def reference_model(cfg) -> torch.nn.Module:
    """torchvision's own network for this family, with aux heads, as a user would take it."""
    n = cfg.model.num_classes
    if cfg.model.name.startswith("inception_v1"):
        return torchvision.models.googlenet(num_classes=n, aux_logits=True, init_weights=True)
    return torchvision.models.inception_v3(num_classes=n, aux_logits=True, init_weights=True)


def reference_step_fn(cfg, model, device, read_loss: bool = True):
    """step(images, targets): one step of a plain loop in the style of torchvision's reference
    classification script (float input, loss read every step unless `read_loss` is off), at the configured
    precision."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    dtype = PRECISIONS[build_runtime(device, cfg.runtime.precision).precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    model.train()

    def step(images, targets):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(images)
            aux = sum(F.cross_entropy(a, targets) for a in out[1:] if a is not None)
            loss = F.cross_entropy(out[0], targets) + 0.3 * aux
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if read_loss:
            loss.item()  # the reference logs the loss every step: a host sync
    return step


# ----------------------------------------------------------------------------------------------- modes

def our_training(cfg, device):
    """The training step our Trainer runs (googlenet.training.step.TrainStep: the same build and the same per-batch call),
    on this run's data; returns (step, loader, epoch function(steps) -> data-wait seconds)."""
    runtime = build_runtime(device, cfg.runtime.precision, cfg.runtime.channels_last, cfg.runtime.cudnn_benchmark)
    env = DistEnv()
    torch.manual_seed(cfg.seed)
    data = build_data(cfg.data, cfg.seed, device=device)
    if cfg.data.num_classes is None:
        cfg.data.num_classes = cfg.model.num_classes = len(data.classes)
    model = runtime.prepare(build_from_config(cfg.model))
    steps_per_epoch = len(data.train) // cfg.optim.accumulate
    step = TrainStep.build(cfg, model, runtime, env, steps_per_epoch, cfg.data.batch_size * cfg.optim.accumulate)
    meters = DeviceMeters(TRAIN_METERS, device)

    def epoch(steps: int) -> float:
        """`steps` optimizer steps, reading the meters once per trainer.log_every steps as the Trainer does."""
        data.train.set_epoch(0)
        step.train_model.train()
        step.normalizer.train()
        position, wait, tick = Position(), 0.0, time.perf_counter()
        for images, targets, _, factors in data.train:
            wait += time.perf_counter() - tick
            images, targets = step.to_device(images, targets, factors)
            stepped = step.batch(images, targets, position, float(position.step), meters)
            position.after_batch(stepped, cfg.data.batch_size * cfg.optim.accumulate)
            if stepped:
                done = position.step
                if done % cfg.trainer.log_every == 0 or done == steps:
                    meters.read(env)
                    meters.reset()
                if done == steps:
                    return wait
            tick = time.perf_counter()
        raise RuntimeError(f"the loader ran out after {position.step} of {steps} steps; lower --steps")  # never time nothing
    return step, data, epoch


def bench_train_synthetic(cfg, args, device, emit):
    cfg.data.train_batches = args.steps * cfg.optim.accumulate
    cfg.trainer.log_every = max(args.steps, 1)
    step, _, epoch = our_training(cfg, device)
    batch = cfg.data.batch_size
    ref_model = reference_model(cfg).to(device)
    images = torch.randn(batch, 3, cfg.data.crop_size, cfg.data.crop_size, device=device)
    targets = torch.randint(0, cfg.model.num_classes, (batch,), device=device)
    reference_step = reference_step_fn(cfg, ref_model, device)
    # like with like: the same reference network in channels_last (as ours runs with runtime.channels_last)
    # and without the per-step loss read, so that the ratios say where a difference comes from
    tuned_model = copy.deepcopy(ref_model).to(memory_format=torch.channels_last)
    tuned_step = reference_step_fn(cfg, tuned_model, device, read_loss=False)
    tuned_images = images.contiguous(memory_format=torch.channels_last)

    def ref_epoch():
        for _ in range(args.steps):
            reference_step(images, targets)

    def tuned_epoch():
        for _ in range(args.steps):
            tuned_step(tuned_images, targets)
    seconds, ref_seconds, tuned_seconds = timed_all([lambda: epoch(args.steps), ref_epoch, tuned_epoch], device,
                                                    args.warmup, args.repeats)
    flops = train_flops_per_image(step.model, cfg.data.crop_size, device)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    ours = batch * args.steps * cfg.optim.accumulate / seconds
    reference = batch * args.steps / ref_seconds
    tuned = batch * args.steps / tuned_seconds
    peak, peak_text = peak_tflops(device, step.runtime.precision, args.peak_tflops)
    mfu = ours * flops / (peak * 1e12) if peak else None
    emit({"mode": "train_synthetic", "ours_images_per_sec": ours, "reference_images_per_sec": reference,
          "ratio": ours / reference, "reference_channels_last_no_sync_images_per_sec": tuned,
          "ratio_to_channels_last_no_sync": ours / tuned, "train_gflop_per_image": flops / 1e9, "mfu": mfu,
          "peak": peak_text, "peak_memory_gib": memory},
         f"train (synthetic): ours {ours:.1f} images/s, reference {reference:.1f} images/s, "
         f"ratio {ours / reference:.2f}x; reference in channels_last without its per-step loss read "
         f"{tuned:.1f} images/s, ratio {ours / tuned:.2f}x; {flops / 1e9:.2f} GFLOP/image"
         + (f", MFU {100 * mfu:.1f}% of {peak_text}" if mfu else f", MFU n/a (peak {peak_text})")
         + (f", peak memory {memory:.2f} GiB" if memory else ""))


def bench_train_folder(cfg, args, device, emit):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    root = Path(args.folder)
    _, data, epoch = our_training(cfg, device)
    steps = min(args.steps, len(data.train) // cfg.optim.accumulate)
    waits = []

    def timed_epoch():
        start = time.perf_counter()
        waits.append(epoch(steps) / (time.perf_counter() - start))
    seconds = timed(timed_epoch, device, args.warmup, args.repeats)
    ours = steps * cfg.optim.accumulate * cfg.data.batch_size / seconds
    tf = transforms.Compose([transforms.RandomResizedCrop(cfg.data.crop_size), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    dataset = datasets.ImageFolder(str(root / cfg.data.train_split), transform=tf)
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=True, num_workers=cfg.data.workers,
                        pin_memory=device.type == "cuda", drop_last=True, persistent_workers=cfg.data.workers > 0)
    reference_step = reference_step_fn(cfg, reference_model(cfg).to(device), device)

    def ref_epoch():
        for i, (images, targets) in enumerate(loader):
            if i >= steps:
                break
            reference_step(images.to(device, non_blocking=True), targets.to(device, non_blocking=True))
    reference = steps * cfg.data.batch_size / timed(ref_epoch, device, args.warmup, args.repeats)
    wait = statistics.median(waits[args.warmup:] or waits)
    emit({"mode": "train_folder", "ours_images_per_sec": ours, "reference_images_per_sec": reference,
          "ratio": ours / reference, "data_wait_fraction": wait, "workers": cfg.data.workers},
         f"train (JPEG folder, {cfg.data.workers} workers): ours {ours:.1f} images/s (data wait {100 * wait:.0f}%), "
         f"reference {reference:.1f} images/s, ratio {ours / reference:.2f}x")


def bench_eval(cfg, args, device, emit, crops: int):
    from data.device_ops import BatchNormalizer

    size = cfg.data.crop_size
    runtime = build_runtime(device, cfg.runtime.precision, cfg.runtime.channels_last, cfg.runtime.cudnn_benchmark)
    dtype = runtime.autocast_dtype
    channels_last = runtime.channels_last
    images_per_batch = max(1, cfg.data.batch_size // crops) if crops > 1 else cfg.data.batch_size
    n = images_per_batch * crops
    uint8 = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, device=device)
    # 10 and 144 crops: as evaluate.py on a GPU, the views are cut on the device from each decoded image
    # (ImageNet's typical 500 x 375), once per batch; the 1-crop view comes cut from the loader
    geometry = Geometry(size, round(size / 0.875))  # evaluate.py's default resize
    decoded = [Decoded(torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8, device=device), (500, 375))
               for _ in range(images_per_batch)]
    ours_model = build_model(cfg.model.name, **{**model_options(cfg.model), "aux_logits": False}).to(device).eval()
    if channels_last:
        ours_model = ours_model.to(memory_format=torch.channels_last)
    normalizer = BatchNormalizer(channels_last=channels_last).to(device).eval()

    @torch.no_grad()
    def ours_batch():
        views = uint8 if crops == 1 else cut_on_device(decoded, geometry, crops).flatten(0, 1)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = ours_model(normalizer(views))
        logits.float().softmax(1).view(images_per_batch, crops, -1).mean(1).topk(5, 1)

    ref_model = reference_model(cfg).to(device).eval()
    ref_input = torch.randn(n, 3, size, size, device=device)

    @torch.no_grad()
    def ref_batch():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = ref_model(ref_input)
        logits.float().softmax(1).view(images_per_batch, crops, -1).mean(1).topk(5, 1)
    seconds, ref_seconds = timed_pair(ours_batch, ref_batch, device, args.warmup, args.repeats * 3)
    ours, reference = images_per_batch / seconds, images_per_batch / ref_seconds
    emit({"mode": f"eval{crops}", "crops": crops, "ours_images_per_sec": ours, "reference_images_per_sec": reference,
          "ratio": ours / reference, "crops_per_batch": n},
         f"eval ({crops} crop{'s' if crops > 1 else ''}): ours {ours:.1f} images/s ({ours * crops:.0f} crops/s), "
         f"reference {reference:.1f} images/s, ratio {ours / reference:.2f}x")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="train.py config overrides (key=value)")
    p.add_argument("--modes", default="train,eval1,eval144", help="train, folder, eval1, eval144 (comma separated)")
    p.add_argument("--folder", help="ImageFolder root with train/ for the end-to-end measurement")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per timed run")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    p.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU, if not in the table")
    p.add_argument("--output", type=Path, help="append one JSON line per measurement to this file")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.folder:
        modes = modes if "folder" in modes else modes + ["folder"]
    try:
        with tempfile.TemporaryDirectory() as scratch:
            cfg = compose_config("train", ["data=synthetic", "trainer.progress=false", "trainer.log_images=false",
                                           *args.overrides, f"hydra.run.dir={scratch}/run"])
            device = resolve_device(cfg.runtime.device)
            context = {
                "model": cfg.model.name, "batch": cfg.data.batch_size, "size": cfg.data.crop_size,
                "precision": build_runtime(device, cfg.runtime.precision).precision, "compile": bool(cfg.runtime.compile),
                "channels_last": str(cfg.runtime.channels_last), "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
                or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "command": " ".join(sys.argv),
            }
            print(f"{context['model']} batch {context['batch']} at {context['size']} px, {context['precision']}, "
                  f"{context['device_name']} ({device}), torch {torch.__version__}")

            def emit(record, line):
                print(line)
                if args.output:
                    args.output.parent.mkdir(parents=True, exist_ok=True)
                    with args.output.open("a") as f:
                        f.write(json.dumps({**context, **record}) + "\n")
            for mode in modes:
                if mode == "train":
                    bench_train_synthetic(cfg.copy(), args, device, emit)
                elif mode == "folder":
                    if not args.folder:
                        raise UserError("--modes folder needs --folder ROOT")
                    folder_cfg = compose_config("train", ["trainer.progress=false", "trainer.log_images=false",
                                                          *args.overrides, f"data.root={args.folder}",
                                                          f"hydra.run.dir={scratch}/folder"])
                    bench_train_folder(folder_cfg, args, device, emit)
                elif mode in ("eval1", "eval10", "eval144"):
                    bench_eval(cfg, args, device, emit, int(mode[4:]))
                else:
                    raise UserError(f"unknown mode {mode!r}; use train, folder, eval1, eval10, eval144")
            if device.type == "cpu":
                print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
