import pytest
import torch
from omegaconf import OmegaConf


def test_tf_style_rmsprop_and_lr_scaling():
    from googlenet.training.optim import RMSpropTF, scaled_lr
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    g = torch.tensor([0.5, 1.0])
    opt = RMSpropTF([p], lr=0.1, alpha=0.9, eps=1.0, momentum=0.9)
    ms, mom, expected = torch.ones(2), torch.zeros(2), p.detach().clone()
    for _ in range(2):
        p.grad = g.clone()
        opt.step()
        ms = 0.9 * ms + 0.1 * g ** 2           # the mean square starts at 1
        mom = 0.9 * mom + 0.1 * g / torch.sqrt(ms + 1.0)  # eps inside the square root
        expected -= mom
    assert torch.allclose(p.detach(), expected)
    cfg = OmegaConf.create({"lr": 0.1, "base_batch": 256, "scale_lr": "linear"})
    assert scaled_lr(cfg, 1024) == pytest.approx(0.4)
    cfg.scale_lr = "sqrt"
    assert scaled_lr(cfg, 1024) == pytest.approx(0.2)
    cfg.scale_lr = "none"
    assert scaled_lr(cfg, 1024) == pytest.approx(0.1)


def test_fp16_on_a_gpu_is_refused_for_optimizers_that_would_sync_every_step():
    from common.errors import UserError
    from googlenet.training.optim import RMSpropTF
    from googlenet.training.step import check_amp_scaling
    params = [torch.nn.Parameter(torch.zeros(2))]
    for optimizer in (RMSpropTF(params, lr=0.1), torch.optim.RMSprop(params, lr=0.1)):
        with pytest.raises(UserError, match="cannot take fp16's scaled gradients without a host sync"):
            check_amp_scaling(optimizer, "rmsprop", "fp16", "cuda")
        check_amp_scaling(optimizer, "rmsprop", "bf16", "cuda")  # bf16 needs no scaler
        check_amp_scaling(optimizer, "rmsprop", "fp16", "cpu")   # nothing to wait for on the CPU
    check_amp_scaling(torch.optim.SGD(params, lr=0.1, momentum=0.9, fused=True), "sgd", "fp16", "cuda")  # as built
