import torch
import torch.nn.functional as F

from googlenet.models import build_model
from googlenet.training.loss import InceptionLoss


def test_aux_terms_reach_the_gradient_with_weight_0_3():
    torch.manual_seed(0)
    model = build_model("inception_v1", num_classes=5, dropout=0.0, aux_dropout=0.0).train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([1, 3])
    out = model(x)
    loss, terms = InceptionLoss(0.3)(out, y)
    by_hand = F.cross_entropy(out.logits, y) + 0.3 * (F.cross_entropy(out.aux[0], y) + F.cross_entropy(out.aux[1], y))
    assert torch.allclose(loss, by_hand)
    assert set(terms) == {"main", "aux1", "aux2"}
    assert torch.allclose(terms["aux2"], F.cross_entropy(out.aux[1], y))
    g_ours = torch.autograd.grad(loss, model.aux1.fc2.weight, retain_graph=True)[0]
    g_aux_alone = torch.autograd.grad(F.cross_entropy(out.aux[0], y), model.aux1.fc2.weight, retain_graph=True)[0]
    assert torch.allclose(g_ours, 0.3 * g_aux_alone, atol=1e-7)
    g_fc = torch.autograd.grad(loss, model.fc.weight, retain_graph=True)[0]  # the main head is unweighted
    assert torch.allclose(g_fc, torch.autograd.grad(F.cross_entropy(out.logits, y), model.fc.weight)[0])
