import torch

from googlenet.distributed import DistEnv
from googlenet.training.meters import DeviceMeters


def test_named_meters_sum_tensors_and_numbers():
    meters = DeviceMeters(("loss", "top1", "images"), "cpu")
    meters.add(loss=torch.tensor(2.5), top1=torch.tensor(3), images=4)
    meters.add(loss=torch.tensor(0.5), images=2)
    assert meters.read(DistEnv()) == {"loss": 3.0, "top1": 3.0, "images": 6.0}
    total = DeviceMeters(("loss", "top1", "images"), "cpu")
    total.add_from(meters)
    meters.reset()
    assert meters.read() == {"loss": 0.0, "top1": 0.0, "images": 0.0}
    assert total.read()["images"] == 6.0
