import pytest
import torch
import torchvision

from common.errors import UserError
from googlenet.models import PRESETS, InceptionOutputs, build_model, load_torchvision_weights, preset_config
from googlenet.models.summary import count_parameters, summarize_preset


@pytest.mark.parametrize("name, without_aux, with_aux", [
    ("inception_v1_paper", 6_998_552, 13_378_280),
    ("inception_v1_torchvision", 6_624_904, 13_004_888),
    ("inception_v3_torchvision", 23_834_568, 27_161_264),
])
def test_parameter_counts_match_the_references(name, without_aux, with_aux):
    model = build_model(name)
    assert count_parameters(model, include_aux=False) == without_aux
    assert count_parameters(model, include_aux=True) == with_aux
    assert count_parameters(build_model(name, aux_logits=False)) == without_aux


def test_googlenet_stage_shapes_match_table_1():
    shapes = dict(summarize_preset("inception_v1_paper").stages)
    assert shapes["conv1"] == (64, 112, 112)
    assert shapes["maxpool1"] == (64, 56, 56)
    assert shapes["conv3"] == (192, 56, 56)
    assert shapes["maxpool2"] == (192, 28, 28)
    assert shapes["inception3a"] == (256, 28, 28)
    assert shapes["inception3b"] == (480, 28, 28)
    assert shapes["inception4a"] == (512, 14, 14)
    assert shapes["inception4d"] == (528, 14, 14)
    assert shapes["inception4e"] == (832, 14, 14)
    assert shapes["inception5b"] == (1024, 7, 7)
    assert shapes == dict(summarize_preset("inception_v1_torchvision").stages)


def test_factorized_grid_sizes_follow_the_table():
    shapes = dict(summarize_preset("inception_v2").stages)
    assert shapes["Conv2d_1a_3x3"] == (32, 149, 149)
    assert shapes["Conv2d_2b_3x3"] == (64, 147, 147)
    assert shapes["maxpool1"] == (64, 73, 73)
    assert shapes["Conv2d_3b_3x3"] == (80, 71, 71)
    assert shapes["Conv2d_4a_3x3"] == (192, 35, 35)
    for name in ("Conv2d_4b_3x3", "Mixed_5b", "Mixed_5c", "Mixed_5d"):
        assert shapes[name] == (288, 35, 35)
    for name in ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_6f"):
        assert shapes[name] == (768, 17, 17)
    assert shapes["Mixed_7a"] == (1280, 8, 8)
    assert shapes["Mixed_7c"] == (2048, 8, 8)


def test_googlenet_counts_about_1_5_g_multiply_adds(capsys):
    summary = summarize_preset("inception_v1_paper")
    assert 1.4e9 < summary.mult_adds < 1.7e9
    from googlenet.models.__main__ import main
    assert main(["inception_v1"]) == 0
    out = capsys.readouterr().out
    assert "multiply-adds: 1.5" in out and "7,005,832" in out


def _calibrate_bn(model, size):
    """Give batch norm realistic running statistics so eval-mode outputs are O(1), not 1e11."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, size, size))
    model.eval()


@pytest.mark.parametrize("tv_builder, name, size", [
    (torchvision.models.googlenet, "inception_v1_torchvision", 160),
    (torchvision.models.inception_v3, "inception_v3_torchvision", 299),
])
@pytest.mark.parametrize("transform_input", [False, True])
def test_torchvision_weights_give_identical_outputs(tv_builder, name, size, transform_input):
    torch.manual_seed(0)
    reference = tv_builder(aux_logits=True, init_weights=True, transform_input=transform_input)
    _calibrate_bn(reference, size)
    ours = load_torchvision_weights(build_model(name, transform_input=transform_input), reference.state_dict()).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert expected.abs().max() > 1e-3
    assert (expected - got).abs().max() < 1e-4


def test_torchvision_weights_mismatch_lists_keys(tmp_path):
    state = torchvision.models.googlenet(aux_logits=False, init_weights=True).state_dict()
    with pytest.raises(UserError, match="missing keys aux1"):
        load_torchvision_weights(build_model("inception_v1_torchvision"), state)
    # without aux heads the same file loads
    load_torchvision_weights(build_model("inception_v1_torchvision", aux_logits=False), state)
    with pytest.raises(UserError, match="unexpected keys"):
        load_torchvision_weights(build_model("inception_v3_torchvision", aux_logits=False), state)
    with pytest.raises(UserError, match="check num_classes"):
        load_torchvision_weights(build_model("inception_v1_torchvision", aux_logits=False, num_classes=10), state)
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupt or not a checkpoint"):
        load_torchvision_weights(build_model("inception_v1_torchvision"), path)


@pytest.mark.parametrize("name, size", [(n, 96 if n.startswith("inception_v1") else 139) for n in PRESETS])
def test_forward_backward_output_contract(name, size):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7)
    x = torch.randn(2, 3, size, size)
    out = model.train()(x)
    assert isinstance(out, InceptionOutputs)
    assert out.logits.shape == (2, 7)
    assert len(out.aux) == (2 if name.startswith("inception_v1") else 1)
    assert all(a.shape == (2, 7) for a in out.aux)
    (out.logits.sum() + sum(a.sum() for a in out.aux)).backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        logits = model.eval()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 7)
    no_aux = build_model(name, num_classes=7, aux_logits=False).train()(x)
    assert no_aux.aux == ()


def test_initialisation_is_deterministic_under_a_seed():
    def weights():
        torch.manual_seed(123)
        return build_model("inception_v1").state_dict()
    a, b = weights(), weights()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(124)
    c = build_model("inception_v1").state_dict()
    assert not torch.equal(a["conv1.conv.weight"], c["conv1.conv.weight"])


def test_unknown_model_lists_the_choices():
    with pytest.raises(UserError, match="choose one of: inception_v1, inception_v1_paper"):
        build_model("resnet50")
    with pytest.raises(UserError, match="no option"):
        build_model("inception_v1", dropuot=0.3)
    with pytest.raises(UserError, match="branch5x5_kernel"):
        build_model("inception_v1", branch5x5_kernel=7)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_the_config_files(name):
    """configs/model/<name>.yaml is the one definition of a preset: code builds exactly what it says."""
    from dataclasses import asdict

    from omegaconf import OmegaConf

    from googlenet.models import INPUT_SIZE
    yaml = OmegaConf.to_container(OmegaConf.load(f"configs/model/{name}.yaml"))
    assert yaml.pop("name") == name and yaml.pop("input_size") == INPUT_SIZE[name]
    assert yaml.pop("num_classes") == "${data.num_classes}"
    assert yaml.pop("family") == PRESETS[name].family
    options = asdict(preset_config(name))
    assert options.pop("num_classes") == 1000
    assert options == yaml


def test_model_options_are_checked_by_type_and_range():
    for bad, message in [({"batch_norm": "maybe"}, "model.batch_norm='maybe' must be true or false"),
                         ({"aux_pool": "bogus"}, "model.aux_pool='bogus' is not one of: paper, adaptive"),
                         ({"dropout": 1.5}, "model.dropout=1.5 must be <= 1"),
                         ({"num_classes": 2.0}, "model.num_classes=2.0 must be an integer")]:
        with pytest.raises(UserError) as e:
            build_model("inception_v1", **bad)
        assert message in str(e.value)
    with pytest.raises(UserError, match="model.flavour='tf' is not one of: paper, torchvision"):
        build_model("inception_v2", flavour="tf")
