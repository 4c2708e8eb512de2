import subprocess
import sys
import tarfile
from pathlib import Path

from helpers import ROOT, make_image

from data.datasets import ImageFolderDataset
from data.multicrop import EvalTransform


def _tar_bytes(files: dict[str, bytes], path: Path):
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            src = path.parent / ("_" + Path(name).name)
            src.write_bytes(data)
            tar.add(src, arcname=name)
            src.unlink()
    return path


def test_prepare_imagenet_on_a_miniature_download(tmp_path):
    src = tmp_path / "downloads"
    src.mkdir()
    jpeg = make_image(tmp_path / "img.JPEG").read_bytes()
    wnids = ["n01440764", "n01443537"]
    for w in wnids:
        _tar_bytes({f"{w}_{i}.JPEG": jpeg for i in range(3)}, src / f"{w}.tar")
    _tar_bytes({f"{w}.tar": (src / f"{w}.tar").read_bytes() for w in wnids}, src / "train.tar")
    val_names = [f"ILSVRC2012_val_{i:08d}" for i in range(1, 5)]
    _tar_bytes({f"{n}.JPEG": jpeg for n in val_names}, src / "val.tar")
    (src / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n" + "".join(f"{n},{wnids[i % 2]} 1 2 3 4\n" for i, n in enumerate(val_names)))
    out = tmp_path / "imagenet"
    cmd = [sys.executable, str(ROOT / "scripts" / "prepare_imagenet.py"), "--out", str(out), "--quiet",
           "--train-tar", str(src / "train.tar"), "--val-tar", str(src / "val.tar"),
           "--val-labels", str(src / "LOC_val_solution.csv")]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "train: 6 images" in first.stdout and "val: 4 images" in first.stdout
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert [str(f) for f in files] == sorted(
        [f"train/{w}/{w}_{i}.JPEG" for w in wnids for i in range(3)]
        + [f"val/{wnids[i % 2]}/{n}.JPEG" for i, n in enumerate(val_names)])
    stamps = {f: (out / f).stat().st_mtime_ns for f in files}
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 0
    assert {f: (out / f).stat().st_mtime_ns for f in files} == stamps
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == files
    assert (src / "train.tar").is_file() and (src / "val.tar").is_file()  # sources kept
    ds = ImageFolderDataset(out, "val", EvalTransform(32, 36))
    assert ds.classes == wnids and len(ds) == 4
    # a wrong input fails with one line
    bad = subprocess.run(cmd[:5] + ["--train-tar", str(src / "val.tar")], capture_output=True, text=True)
    assert bad.returncode == 2 and "not per-class tars" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
