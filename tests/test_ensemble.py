"""Ensembles x crops (the GoogLeNet paper's Table 3): probability averaging, crops=all, saved probabilities."""
import json
from pathlib import Path

import pytest
import torch
from helpers import make_folder, make_image, tiny_overrides
from PIL import Image
from torch import nn

import googlenet.evaluation.run as evaluation_run
from common.errors import UserError
from googlenet.cli.config import compose_config
from googlenet.evaluation import LoadedModel, run_evaluation
from googlenet.training.trainer import train


class ConstantModel(nn.Module):
    """Known outputs: the same logits for every input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.logits.expand(len(x), -1) + 0 * self.dummy


def _evaluate(tmp_path, *args, name="out.json"):
    return run_evaluation(compose_config("evaluate", [*args, "data.workers=0", "runtime.device=cpu",
                                                      "runtime.precision=32", f"output={tmp_path / name}"]))


def test_models_are_combined_by_averaging_their_probabilities(tmp_path, monkeypatch):
    # A prefers class 0, B is sure of class 1. Averaged logits pick class 0, a vote is a tie; the average of the
    # softmax probabilities picks class 1, as the paper combines its models.
    a, b = [4.0, 0.0, 3.0], [0.0, 3.0, -30.0]
    pa, pb = torch.tensor(a).softmax(0), torch.tensor(b).softmax(0)
    assert ((pa + pb) / 2).argmax() == 1 and ((torch.tensor(a) + torch.tensor(b)) / 2).argmax() == 0
    classes = ["c0", "c1", "c2"]
    root = tmp_path / "ds"
    for c, count in zip(classes, (1, 2, 1)):
        for i in range(count):
            make_image(root / "val" / c / f"{i}.JPEG", size=(40, 40))
    models = {"a.pt": ConstantModel(a), "b.pt": ConstantModel(b)}
    monkeypatch.setattr(evaluation_run, "load_for_eval", lambda cfg, path: LoadedModel(
        models[path.name], "inception_v2", classes, classes, {"name": "folder", "root": str(root), "crop_size": 32,
                                                              "eval_resize": 36}, "raw", path))
    results = _evaluate(tmp_path, f"ckpt=[{tmp_path / 'a.pt'},{tmp_path / 'b.pt'}]", "crops=10", "save_probs=true")
    rows = {(r["models"], r["crops"]): r for r in results["table"]}
    assert rows[(1, 10)]["top1_error"] == pytest.approx(75.0)  # A alone predicts class 0: 1 image of 4
    assert rows[(2, 10)]["top1_error"] == pytest.approx(50.0)  # the ensemble predicts class 1: 2 images of 4
    assert rows[(2, 10)]["cost"] == 20 and results["top1"] == pytest.approx(50.0)
    saved = [torch.load(p, weights_only=True) for p in results["probs_files"]]
    for record, expected in zip(saved, (pa, pb)):  # each model's probabilities, kept per image as float16
        assert record["probs"].dtype == torch.float16 and record["probs"].shape == (4, 3)
        assert torch.allclose(record["probs"].float(), expected.expand(4, -1), atol=1e-3)
    hand = (saved[0]["probs"].float() + saved[1]["probs"].float()) / 2
    assert hand.argmax(1).tolist() == [1, 1, 1, 1]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two tiny GoogLeNets trained with different seeds, as the paper's 7 differ only in sampling."""
    tmp = tmp_path_factory.mktemp("ensemble")
    data = make_folder(tmp / "ds")
    paths = []
    for seed in (0, 1):
        run_dir = tmp / f"seed{seed}"
        assert train(compose_config("train", tiny_overrides(data, run_dir, "trainer.epochs=1", f"seed={seed}"))
                     ).exit_code == 0
        paths.append(run_dir / "checkpoints" / "last.pt")
    return tmp, data, paths


def test_all_crop_modes_in_one_pass_equal_three_runs_and_saved_probabilities_recombine(tmp_path, two_models,
                                                                                       monkeypatch):
    _, _, (a, b) = two_models
    both = f"ckpt=[{a},{b}]"

    def first_four(*args, name):  # every comparison below holds image by image: 4 images show it
        return _evaluate(tmp_path, *args, "data.batch_size=4", "limit_batches=1", name=name)

    toy = first_four(f"ckpt={a}", name="toy.json")
    assert all("paper_top5_error" not in r for r in toy["table"])  # the paper's numbers are ImageNet's
    # from here on the toy classes stand in for ImageNet's 1000 (the paper's numbers then join the report)
    monkeypatch.setattr(evaluation_run, "imagenet_classes", lambda: [(c, c) for c in ("n01", "n02", "n03")])
    every = first_four(both, "crops=all", "save_probs=true", name="all.json")
    assert [(r["models"], r["crops"]) for r in every["table"]] == [(k, c) for k in (1, 2) for c in (1, 10, 144)]
    for crops in (1, 10, 144):
        alone = first_four(both, f"crops={crops}", name=f"{crops}.json")
        assert alone["table"] == [r for r in every["table"] if r["crops"] == crops]
    assert len(every["probs_files"]) == 6  # 2 models x 3 crop modes
    recombined = first_four(f"probs=[{','.join(every['probs_files'])}]", name="again.json")
    assert recombined["table"] == every["table"]
    only_a = [p for p in every["probs_files"] if p.startswith(str(a.with_suffix("")))]
    subset = first_four(f"probs=[{','.join(only_a)}]", name="subset.json")
    direct = first_four(f"ckpt={a}", "crops=all", name="a.json")
    assert subset["table"] == direct["table"]
    # the report: the table as JSON and Markdown, and a plot that opens
    saved = json.loads((tmp_path / "all.json").read_text())
    assert saved["table"] == every["table"]
    assert [r.get("paper_top5_error") for r in saved["table"]] == [10.07, 9.15, 7.89, None, None, None]
    markdown = (tmp_path / "all.md").read_text()
    assert "| models | crops | cost | top-1 error | top-5 error | paper top-5 |" in markdown
    assert "| 2 | 144 | 288 |" in markdown
    with Image.open(tmp_path / "all.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 200 and plot.getextrema() != ((255, 255),) * 4


def test_ensemble_input_errors_are_one_line(tmp_path, two_models):
    tmp, data, (a, b) = two_models
    with pytest.raises(UserError, match="matches no file"):
        _evaluate(tmp_path, f"ckpt={tmp / 'nothing' / '*' / 'best.pt'}")
    four = make_folder(tmp_path / "four", classes=("n01", "n02", "n03", "n04"), per_class=2)
    other = tmp_path / "other"
    assert train(compose_config("train", tiny_overrides(four, other, "trainer.epochs=1", "data.num_classes=4"))
                 ).exit_code == 0
    with pytest.raises(UserError, match="was trained on other classes than .* an ensemble needs one class list"):
        _evaluate(tmp_path, f"ckpt=[{a},{other / 'checkpoints' / 'last.pt'}]")
    train_split = _evaluate(tmp_path, f"ckpt={b}", "data.val_split=train", "save_probs=true", name="t.json")
    val_split = _evaluate(tmp_path, f"ckpt={a}", "save_probs=true", name="v.json")
    with pytest.raises(UserError, match="holds probabilities for another split"):
        _evaluate(tmp_path, f"probs=[{val_split['probs_files'][0]},{train_split['probs_files'][0]}]")
    with pytest.raises(UserError, match="pass ckpt= .* or probs= .*, not both"):
        _evaluate(tmp_path, f"ckpt={a}", f"probs={val_split['probs_files'][0]}")
    # one model twice is not an ensemble of two; model A at 1 crop and model B at 10 crops are not one model at
    # two crop modes
    with pytest.raises(UserError, match=f"ckpt= names {a} twice"):
        _evaluate(tmp_path, f"ckpt=[{a},{a.parent / '.' / a.name}]")
    a_one = Path(val_split["probs_files"][0])
    b_ten = Path(_evaluate(tmp_path, f"ckpt={b}", "crops=10", "save_probs=true", name="b10.json")["probs_files"][0])
    with pytest.raises(UserError, match="different models for each crop mode"):
        _evaluate(tmp_path, f"probs=[{a_one},{b_ten}]")
    with pytest.raises(UserError, match="probs= names .* twice"):
        _evaluate(tmp_path, f"probs=[{a_one},{a_one}]")
    # tampered probability files: one line naming the file
    record = torch.load(a_one, weights_only=True)
    for what, change in [("shape", lambda r: r.update(probs=r["probs"][:, :2])),
                         ("nan", lambda r: r["probs"].__setitem__((0, 0), float("nan"))),
                         ("labels", lambda r: r.update(labels=r["labels"].float())),
                         ("images", lambda r: r.update(images=None))]:
        tampered = {**record, "probs": record["probs"].clone()}
        change(tampered)
        path = tmp_path / f"{what}.val-1crop.probs.pt"
        torch.save(tampered, path)
        with pytest.raises(UserError, match=f"{path} is damaged: "):
            _evaluate(tmp_path, f"probs={path}")


def test_the_papers_numbers_stand_only_beside_googlenet_on_imagenets_validation_set():
    from data.classes import imagenet_classes
    wnids = [w for w, _ in imagenet_classes()]
    assert evaluation_run.papers_setting(["inception_v1_torchvision"], wnids, "val")
    assert not evaluation_run.papers_setting(["inception_v3_torchvision"], wnids, "val")
    assert not evaluation_run.papers_setting(["inception_v1"], wnids[:999], "val")
    assert not evaluation_run.papers_setting(["inception_v1"], wnids, "train")
