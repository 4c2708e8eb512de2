"""A training step and an evaluation batch never read a value back to the host nor copy Python numbers to the
device (issue 19, item 6): on a GPU either makes the host wait for the device. Recorded here on the CPU, where
the same operators run, with a dispatch mode that sees every operator of the step."""
import torch

from common.host_syncs import HostSyncWatch
from data.device_ops import BatchNormalizer
from googlenet.cli.config import compose_config
from googlenet.distributed import detect_env
from googlenet.evaluation.passes import crop_averaged_probs
from googlenet.models.registry import build_from_config, build_model
from googlenet.runtime import runtime_from_config
from googlenet.training.meters import DeviceMeters
from googlenet.training.position import Position
from googlenet.training.step import TRAIN_METERS, TrainStep


def paper_recipe(*extra):
    # GoogLeNet's recipe: aux heads, photometric distortions, PCA lighting, EMA; bf16 autocast (auto on CPU)
    return compose_config("train", ["experiment=googlenet_paper", "data=synthetic", "data.crop_size=64",
                                    "data.num_classes=10", "data.batch_size=4", "runtime.device=cpu", *extra])


def test_a_training_step_of_the_paper_recipe_stays_on_the_device():
    cfg = paper_recipe()
    torch.manual_seed(0)
    model = build_from_config(cfg.model)
    runtime = runtime_from_config(cfg.runtime)
    step = TrainStep.build(cfg, model, runtime, detect_env({}), steps_per_epoch=10, global_batch=4)
    meters, position = DeviceMeters(TRAIN_METERS, runtime.device), Position()
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    targets, factors = torch.arange(4), torch.tensor([[1.2, 0.8, 1.1, 0.05]] * 4)

    def one_step():
        x, y = step.to_device(images, targets, factors)
        stepped = step.batch(x, y, position, float(position.step), meters)
        position.after_batch(stepped, 4)

    one_step()  # the first step creates the optimizer's state
    with HostSyncWatch("cpu") as watch:
        for _ in range(2):
            one_step()
    assert watch.offenders == [], watch.offenders
    assert step.ema is not None and step.normalizer.lighting_std > 0 and model.aux1 is not None


def test_an_evaluation_batch_stays_on_the_device():
    model = build_model("inception_v3_torchvision", num_classes=10).eval()  # with torchvision's input transform
    runtime = runtime_from_config(paper_recipe().runtime)
    normalizer = BatchNormalizer().eval()
    views = torch.randint(0, 256, (1, 4, 3, 75, 75), dtype=torch.uint8)
    crop_averaged_probs(model, views, normalizer, runtime, crop_batch=4)
    with HostSyncWatch("cpu") as watch, torch.no_grad():
        crop_averaged_probs(model, views, normalizer, runtime, crop_batch=4)
    assert watch.offenders == [], watch.offenders


def test_the_watch_names_the_line_that_reads_the_device():
    with HostSyncWatch("cpu") as watch:
        torch.ones(2).sum().item()
    assert watch.offenders == ["a value read back to the host (.item(), bool(), float(), int()) at outside this "
                               "project"]


def test_the_watch_may_be_stopped_twice_or_never_started():
    # the acceptance script stops it from a training hook and again when the epoch ends (or the run ended
    # before the watched steps began)
    HostSyncWatch("cpu").stop()
    watch = HostSyncWatch("cpu").start()
    watch.stop()
    watch.stop()
    torch.ones(1).item()
    assert watch.offenders == [] and not watch.watching
