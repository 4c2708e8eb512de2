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
