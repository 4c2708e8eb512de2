"""predict.py on image files, export.py to ONNX and torch.export (requirements-export.txt for ONNX)."""
import json

import pytest
import torch
import torchvision
from helpers import installed, make_image, run_script

from googlenet.cli.config import compose_config
from googlenet.deploy.export import run_export
from googlenet.deploy.predict import run_predict


def test_predict_names_the_top_classes_and_reports_unreadable_files(tmp_path, sample_checkpoint, sample_root):
    photos = tmp_path / "photos"
    for path in sorted((sample_root / "val").glob("*/*_000[0-1].JPEG"))[:3]:
        (photos / "nested").mkdir(parents=True, exist_ok=True)
        (photos / "nested" / path.name).write_bytes(path.read_bytes())
    (photos / "broken.jpg").write_text("not an image")
    result = run_script("predict.py", f"ckpt={sample_checkpoint / 'best.pt'}", f"images={photos}", "topk=5",
                        "data.workers=0", f"output={tmp_path / 'out' / 'predictions.json'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"found 4 image(s) under {photos}" in result.stderr  # before the work starts
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"{photos / 'broken.jpg'}: unreadable")
    assert len(lines) == 5 and all(line.count("%") == 5 for line in lines[1:4])  # 3 images, top-5 each
    records = json.loads((tmp_path / "out" / "predictions.json").read_text())["images"]
    good = [r for r in records if "predictions" in r]
    assert len(good) == 3 and [p["rank"] for p in good[0]["predictions"]] == [1, 2, 3, 4, 5]
    assert good[0]["predictions"][0]["name"] in {p.parent.name for p in (sample_root / "val").glob("*/*.JPEG")}
    probabilities = [p["probability"] for p in good[0]["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    csv_rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert csv_rows[0] == "image,rank,class,name,probability,error" and len(csv_rows) == 1 + 1 + 15


def test_predict_with_torchvision_weights_gives_imagenet_names(tmp_path):
    weights = tmp_path / "googlenet.pth"
    torch.save(torchvision.models.googlenet(init_weights=True, aux_logits=False).state_dict(), weights)
    image = make_image(tmp_path / "cat.jpg", size=(300, 240))
    # predict.py's task in this process (its shell path: the test above)
    assert run_predict(compose_config("predict", [f"ckpt={weights}", "model=inception_v1_torchvision", f"images={image}",
                                                  "topk=3", "data.workers=0", f"output={tmp_path / 'p.json'}"])) == 0
    from data.classes import imagenet_classes
    names = {name for _, name in imagenet_classes()}
    predictions = json.loads((tmp_path / "p.json").read_text())["images"][0]["predictions"]
    assert len(predictions) == 3 and all(p["name"] in names for p in predictions)


@pytest.fixture(scope="module")
def inception_v3_weights(tmp_path_factory):
    """torchvision's inception_v3 as a .pth (random weights: the export contract, not accuracy, is tested)."""
    path = tmp_path_factory.mktemp("tv") / "inception_v3.pth"
    torch.save(torchvision.models.inception_v3(init_weights=True, aux_logits=True).state_dict(), path)
    return path


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_exports_match_the_eager_model(tmp_path, fmt, sample_checkpoint, inception_v3_weights, capsys):
    if fmt == "onnx" and not (installed("onnxruntime") and installed("onnxscript")):
        pytest.skip("needs onnx, onnxscript and onnxruntime (pip install -r requirements-export.txt)")
    tv = inception_v3_weights
    cases = [("v1", [f"ckpt={sample_checkpoint / 'best.pt'}"], 56, 10)]
    if fmt == "onnx":  # the torchvision preset's input transform through the exporter that translates every op
        cases.append(("v3", [f"ckpt={tv}", "model=inception_v3_torchvision"], 299, 1000))
    for name, args, size, classes in cases:
        output = tmp_path / f"{name}.{fmt}"
        if name == "v1" and fmt == "onnx":  # export.py from the shell
            result = run_script("export.py", *args, f"format={fmt}", f"output={output}", cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            printed = result.stdout
        else:  # the same task in this process
            assert run_export(compose_config("export", [*args, f"format={fmt}", f"output={output}"])) == 0
            printed = capsys.readouterr().out
        assert "check: a batch of 3 through the exported model" in printed and "passed" in printed
        assert f"uint8 (N, 3, {size}, {size})" in printed
        images = torch.randint(0, 256, (5, 3, size, size), dtype=torch.uint8)  # yet another batch size
        if fmt == "pt2":
            logits = torch.export.load(output).module()(images)
        else:
            import onnxruntime
            session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
            logits = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
        assert logits.shape == (5, classes) and torch.isfinite(logits).all()
