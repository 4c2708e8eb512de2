"""export.py: the evaluation network (no aux heads) as ONNX or a torch.export program, checked when written.

The input contract, the same for both formats:
- input `images`: uint8 tensor (N, 3, S, S), RGB pixel values 0..255, N any batch size (a dynamic dimension),
  S the crop size the model was trained at (the checkpoint's data.crop_size; 224 or 299 for torchvision
  weights), cut as evaluation cuts it: shorter side resized to eval_resize (S / 0.875), centre crop S x S;
- normalisation (ImageNet mean and std, and torchvision's input transform where the preset has it) is inside;
- output `logits`: float32 (N, classes); a softmax over dim 1 gives the probabilities.
Before the file is renamed into place, the exported model runs on a random batch of another size than the one
it was traced with, and its logits must equal the eager model's: the largest absolute difference, divided by
the largest logit magnitude (or 1, if smaller), within the format's tolerance (float32 on the CPU).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from common.checks import check_choice, check_number
from common.errors import UserError
from common.files import atomic_path, check_writable_file
from data.device_ops import BatchNormalizer

from ..checkpoint import WEIGHT_CHOICES
from ..evaluation.models import load_for_eval
from ..models.layers import AUX_HEADS
from ..models.registry import PRESETS

FORMATS = ("onnx", "pt2")
TOLERANCE = {"onnx": 1e-4, "pt2": 1e-6}  # largest logit difference from the eager model, relative to the logits


def check_export_config(cfg) -> None:
    if not cfg.get("ckpt"):
        raise UserError("ckpt is required: python export.py ckpt=runs/.../checkpoints/best.pt format=onnx|pt2")
    if cfg.get("model") is not None:
        check_choice(cfg, "model.name", list(PRESETS))
    check_choice(cfg, "format", list(FORMATS))
    check_choice(cfg, "weights", list(WEIGHT_CHOICES))
    check_number(cfg, "data.crop_size", integer=True, low=16, optional=True)


class DeployedModel(nn.Module):
    """uint8 images in, logits out: the normaliser and the network in eval mode, without aux heads."""

    def __init__(self, network: nn.Module):
        super().__init__()
        for name in AUX_HEADS:
            if getattr(network, name, None) is not None:
                setattr(network, name, None)
        self.normalizer = BatchNormalizer()
        self.network = network
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalizer(images))


def _export_onnx(model, example, path: Path, dynamic) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter's and optimiser's progress lines
        program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes={"images": {0: dynamic}},
                                    input_names=["images"], output_names=["logits"], verbose=False)
        program.save(str(path))


def _run_onnx(path: Path, images: torch.Tensor) -> torch.Tensor:
    try:
        import onnxruntime
    except ImportError:
        raise UserError("checking the ONNX file needs onnxruntime: pip install -r requirements-export.txt") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def _export_pt2(model, example, path: Path, dynamic) -> None:
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes={"images": {0: dynamic}}), path)


def _run_pt2(path: Path, images: torch.Tensor) -> torch.Tensor:
    return torch.export.load(path).module()(images)


@torch.no_grad()
def export(cfg) -> dict:
    ckpt = Path(str(cfg.ckpt)).expanduser()
    fmt = cfg.format
    output = check_writable_file(cfg.output or ckpt.with_suffix(f".{fmt}"), "output", [ckpt])
    loaded = load_for_eval(cfg, ckpt)
    size = loaded.geometry(cfg).size
    model = DeployedModel(loaded.model.float().cpu())
    example = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=4096)
    check = torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    expected = model(check)
    with atomic_path(output) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            (_export_onnx if fmt == "onnx" else _export_pt2)(model, example, tmp, batch)
        except ImportError as e:
            raise UserError(f"format={fmt} needs {e.name}: pip install -r requirements-export.txt") from None
        got = (_run_onnx if fmt == "onnx" else _run_pt2)(tmp, check)
        difference = (got - expected).abs().max().item() / max(1.0, expected.abs().max().item())
        if not difference <= TOLERANCE[fmt]:
            raise UserError(f"the exported {fmt} model's logits differ from the eager model's by {difference:.3g} "
                            f"of their scale (tolerance {TOLERANCE[fmt]}); nothing was written")
    return {"output": str(output), "format": fmt, "model": loaded.name, "weights": loaded.weights,
            "input": f"uint8 (N, 3, {size}, {size}) RGB 0..255", "classes": len(loaded.classes),
            "max_relative_difference": difference, "tolerance": TOLERANCE[fmt], "check_batch": len(check)}


def run_export(cfg) -> int:
    r = export(cfg)
    print(f"{r['model']} ({r['weights']} weights) -> {r['output']} ({r['format']})")
    print(f"input: images, {r['input']}, normalised inside; output: logits, float32 (N, {r['classes']})")
    print(f"check: a batch of {r['check_batch']} through the exported model; largest logit difference from the "
          f"eager model {r['max_relative_difference']:.2e} of the logits' scale (tolerance {r['tolerance']:.0e}): "
          "passed")
    return 0
