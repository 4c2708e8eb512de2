"""Smoke runs of the benchmark scripts at tiny sizes (speed itself is never asserted)."""
import json
import runpy

import torch
from helpers import ROOT, installed, make_image, run_script


def test_benchmark_prints_both_loops_and_the_ratio(tmp_path, capsys):
    out = tmp_path / "bench.jsonl"
    benchmark = runpy.run_path(str(ROOT / "scripts" / "benchmark.py"))  # the script's main(), in this process
    assert benchmark["main"](["model=inception_v1_torchvision", "runtime.device=cpu", "data.batch_size=2",
                              "data.crop_size=32", "--steps", "1", "--repeats", "1", "--modes",
                              "train,eval1,eval144", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train (synthetic): ours" in printed and "reference" in printed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["mode"] for r in records] == ["train_synthetic", "eval1", "eval144"]
    for r in records:
        assert r["ours_images_per_sec"] > 0 and r["reference_images_per_sec"] > 0
        assert abs(r["ratio"] - r["ours_images_per_sec"] / r["reference_images_per_sec"]) < 1e-9
        assert r["device"] == "cpu" and r["torch"] == torch.__version__
    assert records[0]["train_gflop_per_image"] > 0
    train = records[0]
    tuned = train["reference_channels_last_no_sync_images_per_sec"]  # like with like
    assert tuned > 0 and abs(train["ratio_to_channels_last_no_sync"] - train["ours_images_per_sec"] / tuned) < 1e-9
    assert benchmark["peak_tflops"](torch.device("cpu"), "bf16", None)[0] is None
    assert list(benchmark["PEAK_TFLOPS"]).index("H100 NVL") < list(benchmark["PEAK_TFLOPS"]).index("H100")


def test_data_benchmark_on_a_flat_folder(tmp_path):
    for i in range(6):
        make_image(tmp_path / "imgs" / f"n0{i}_x.JPEG", size=(90, 70), seed=i)
    loaders = "torchvision,pil,dali" if installed("nvidia.dali") else "torchvision,pil"
    result = run_script("scripts/benchmark_data.py", str(tmp_path / "imgs"), "--workers", "0", "--batch-size", "3",
                        "--size", "32", "--epochs", "1", "--paper", "--loader", loaders, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("torchvision") and "paper augmentation" in lines[0]
    assert lines[1].startswith("pil") and "pil / torchvision: " in result.stdout
