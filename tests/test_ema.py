import torch

from googlenet.training.ema import ModelEMA


def test_ema_math_and_batch_norm_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.5)
    w0 = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(4.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)  # first update: decay = min(0.5, 1/10) = 0.1
    assert torch.allclose(ema.module[0].weight, 0.1 * w0 + 0.9 * (w0 + 1))
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 0.9 * 4.0))
    assert ema.module[1].num_batches_tracked.item() == 7
    for _ in range(20):
        ema.update(model)
    assert ema.current_decay() == 0.5
    assert torch.allclose(ema.module[0].weight, w0 + 1, atol=1e-5)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_the_raw_and_the_ema_weights_are_validated_in_one_pass_over_the_data():
    from pathlib import Path

    from torch import nn

    from data.device_ops import BatchNormalizer
    from googlenet.cli.config import compose_config
    from googlenet.distributed import DistEnv
    from googlenet.runtime import runtime_from_config
    from googlenet.training.runlog import RunLog
    from googlenet.training.validation import validate_models

    class Batches:
        """A validation loader that counts how often it is read (each read decodes every image)."""

        def __init__(self):
            gen = torch.Generator().manual_seed(0)
            self.batches = [(torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=gen),
                             torch.tensor([0, 1, 2, 1]), []) for _ in range(3)]
            self.passes = 0

        def set_epoch(self, epoch, start=0):
            pass

        def __len__(self):
            return len(self.batches)

        def __iter__(self):
            self.passes += 1
            return iter(self.batches)
    torch.manual_seed(0)
    raw, ema = (nn.Sequential(nn.Flatten(), nn.Linear(192, 3)) for _ in range(2))
    runtime = runtime_from_config(compose_config("train", ["runtime.device=cpu", "runtime.precision=32"]).runtime)
    log = RunLog(Path("."), enabled=False, tensorboard=False)
    loader = Batches()
    both, _ = validate_models({"val": raw, "val_ema": ema}, loader, BatchNormalizer(), runtime, DistEnv(), log)
    assert loader.passes == 1
    for prefix, model in (("val", raw), ("val_ema", ema)):  # the same numbers as a pass of its own
        alone, _ = validate_models({prefix: model}, loader, BatchNormalizer(), runtime, DistEnv(), log)
        assert alone[prefix] == both[prefix] and both[prefix]["images"] == 12
