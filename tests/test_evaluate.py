import json
from pathlib import Path

import pytest
import torch
from helpers import make_folder, make_image, run_script, tiny_overrides
from torch import nn

import googlenet.evaluation.run as evaluation_run
from common.errors import UserError
from googlenet.checkpoint import load_checkpoint
from googlenet.cli.config import compose_config
from googlenet.evaluation import LoadedModel, evaluate, run_evaluation
from googlenet.training.trainer import train


class ColourModel(nn.Module):
    """Known outputs: logits are fixed functions of the mean colour of the input."""

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.table(x.mean(dim=(2, 3))) + 0 * self.dummy


def _loaded(model, classes):
    return LoadedModel(model, "inception_v1", classes, classes, {"name": "imagenet", "root": None,
                                                                 "crop_size": 32, "eval_resize": 36}, "raw")


def _eval_cfg(tmp_path, root, **kw):
    overrides = [f"ckpt={tmp_path / 'fake.pt'}", f"data.root={root}", "data.workers=0", "data.batch_size=2",
                 f"output={tmp_path / 'out.json'}", "runtime.device=cpu"] + [f"{k}={v}" for k, v in kw.items()]
    (tmp_path / "fake.pt").write_bytes(b"x")
    return compose_config("evaluate", overrides)


def test_known_model_gives_expected_top1_top5_and_json(tmp_path, monkeypatch):
    classes = [f"c{i}" for i in range(6)]
    root = tmp_path / "ds"
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250), (250, 0, 250)]
    for i, c in enumerate(classes):
        for j in range(2):
            img = make_image(root / "val" / c / f"{j}.JPEG", size=(40, 40), colour=colours[i], seed=0)
            from PIL import Image
            Image.new("RGB", (40, 40), colours[i]).save(img)
    # predicts class 0 for red-heavy images etc.: the logit for class k is a match score with colour k
    table = nn.Linear(3, 6, bias=False)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    with torch.no_grad():
        normalised = (torch.tensor(colours, dtype=torch.float32) / 255 - mean) / std
        table.weight.copy_(normalised)
    model = ColourModel(table)
    # the class-index -> prediction: make classes 4 and 5 wrong on top-1 by swapping their rows
    with torch.no_grad():
        table.weight[[4, 5]] = table.weight[[5, 4]].clone()
    monkeypatch.setattr(evaluation_run, "load_for_eval", lambda cfg, path: _loaded(model, classes))
    results = run_evaluation(_eval_cfg(tmp_path, root, crops=10, per_class="true"))
    assert results["images"] == 12
    assert results["top1"] == pytest.approx(100 * 8 / 12)
    assert results["top5"] == pytest.approx(100.0)
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["top1"] == pytest.approx(results["top1"]) and saved["top5_error"] == pytest.approx(0.0)
    assert saved["crops"] == 10 and "paper_top5_error" not in saved  # 6 toy classes are not ImageNet's 1000
    rows = (tmp_path / "out.per_class.csv").read_text().splitlines()
    assert rows[0] == "index,class,name,images,top1,top5" and rows[5].startswith("4,c4,c4,2,0.00,100.00")


@pytest.mark.parametrize("on_device", [False, True], ids=["cut-in-workers", "cut-on-device"])
def test_crops_average_probabilities_not_logits(tmp_path, monkeypatch, on_device):
    # the views are cut by the loader workers (CPU), or on the device from the decoded image (how a GPU
    # evaluates: forced here on the CPU, where the same code runs)
    monkeypatch.setattr(evaluation_run, "cut_views_on_device", lambda device: on_device)
    # Unmirrored views give logits A, mirrored views B. The mean of the logits picks class 0; the mean of
    # the softmax probabilities picks class 1 (A is unsure between 0, 2, 3, 4; B is sure of 1).
    a = torch.tensor([4.0, 0.0, 3.9, 3.9, 3.9])
    b = torch.tensor([0.0, 3.0, -10.0, -10.0, -10.0])
    assert ((a + b) / 2).argmax() == 0 and ((a.softmax(0) + b.softmax(0)) / 2).argmax() == 1

    class MirrorAware(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, x):  # the test images get brighter to the right; a mirror gets darker
            mirrored = x[:, :, :, :4].mean(dim=(1, 2, 3)) > x[:, :, :, -4:].mean(dim=(1, 2, 3))
            return torch.where(mirrored[:, None], b, a) + 0 * self.dummy

    from PIL import Image
    root = tmp_path / "ds"
    ramp = Image.linear_gradient("L").rotate(90).resize((64, 48)).convert("RGB")  # dark left, bright right
    assert ramp.getpixel((0, 24))[0] < ramp.getpixel((63, 24))[0]
    classes = ["c0", "c1", "c2", "c3", "c4"]
    for c in classes:
        for i in range(2 if c == "c1" else 1):
            (root / "val" / c).mkdir(parents=True, exist_ok=True)
            ramp.save(root / "val" / c / f"{i}.JPEG")
    monkeypatch.setattr(evaluation_run, "load_for_eval", lambda cfg, path: _loaded(MirrorAware(), classes))
    results = run_evaluation(_eval_cfg(tmp_path, root, crops=10))
    assert results["images"] == 6
    assert results["top1"] == pytest.approx(100 * 2 / 6)  # both c1 images right; logit averaging gives 1/6


def test_one_crop_matches_the_trainers_validation(tmp_path, tiny_folder, capsys):
    cfg = compose_config("train", tiny_overrides(tiny_folder, tmp_path / "run", "trainer.epochs=2"))
    assert train(cfg).exit_code == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    metrics = load_checkpoint(ckpt)["metrics"]
    results = run_evaluation(compose_config("evaluate", [f"ckpt={ckpt}", "crops=1", "data.workers=0", "runtime.device=cpu"]))
    assert results["images"] == 12 and results["provenance"]["torch"] == torch.__version__
    assert results["top1"] == pytest.approx(metrics["val_top1"])
    assert results["top5"] == pytest.approx(metrics["val_top5"])
    assert Path(results["output"]) == ckpt.with_name("last.eval-val-1crop.json")
    assert Path(results["markdown"]).is_file() and Path(results["plot"]).stat().st_size > 0
    # the same checkpoint at 144 crops through evaluate.py's task (its shell path: test_distributed.py)
    assert evaluate(compose_config("evaluate", [f"ckpt={ckpt}", "crops=144", "data.workers=0", "runtime.device=cpu",
                                                f"output={tmp_path / 'e144.json'}"])) == 0
    assert "crops: 144" in capsys.readouterr().out and json.loads((tmp_path / "e144.json").read_text())["images"] == 12


def evaluation_error(args) -> str:
    with pytest.raises(UserError) as e:
        run_evaluation(compose_config("evaluate", [*args, "data.workers=0", "runtime.device=cpu"]))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_evaluation_errors_are_one_line(tmp_path, tiny_folder):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nonsense")
    assert "ckpt is required" in evaluation_error([])
    assert "not found" in evaluation_error([f"ckpt={tmp_path / 'none.pt'}"])
    assert "corrupt or not a checkpoint" in evaluation_error([f"ckpt={bad}"])
    assert "crops=7 is not one of" in evaluation_error([f"ckpt={bad}", "crops=7"])
    assert train(compose_config("train", tiny_overrides(tiny_folder, tmp_path / "run", "trainer.epochs=1"))).exit_code == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    other = make_folder(tmp_path / "four", classes=("n01", "n02", "n03", "n04"), per_class=1)
    assert "holds model inception_v1" in evaluation_error([f"ckpt={ckpt}", "model=inception_v2"])
    assert "has 4 classes but the model was trained on 3" in evaluation_error([f"ckpt={ckpt}", f"data.root={other}"])
    assert "has no EMA weights" in evaluation_error([f"ckpt={ckpt}", "weights=ema"])
    renamed = tmp_path / "renamed.pth"  # a train.py checkpoint under a torchvision-like name is still one
    renamed.write_bytes(ckpt.read_bytes())
    assert run_evaluation(compose_config("evaluate", [f"ckpt={renamed}", "data.workers=0", "runtime.device=cpu",
                                                      f"output={tmp_path / 'r.json'}"]))["images"] == 12
    shell = run_script("evaluate.py", f"ckpt={bad}", timeout=120, cwd=tmp_path)
    assert shell.returncode == 2 and shell.stderr.startswith("error: checkpoint") and shell.stderr.count("\n") == 1


def test_torchvision_weights_evaluate_with_the_matching_preset(tmp_path):
    import torchvision

    from data.classes import imagenet_classes
    root = tmp_path / "imagenet"
    for wnid, _ in imagenet_classes()[:1000:250]:
        make_image(root / "val" / wnid / "a.JPEG", size=(60, 50))
    weights = tmp_path / "googlenet.pt"  # what the file holds decides, not its suffix
    torch.save(torchvision.models.googlenet(init_weights=True, aux_logits=False).state_dict(), weights)
    assert "add model=inception_v1_torchvision" in evaluation_error([f"ckpt={weights}", f"data.root={root}"])
    # the classes of a torchvision model are all 1000 wnids: a 4-class folder is rejected clearly
    assert "has 4 classes but the model was trained on 1000" in evaluation_error(
        [f"ckpt={weights}", "model=inception_v1_torchvision", f"data.root={root}"])
