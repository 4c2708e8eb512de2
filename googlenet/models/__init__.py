"""GoogLeNet (Inception v1) and the factorized Inception v2/v3.

inception_v1   GoogLeNet, "Going Deeper with Convolutions", Table 1 (paper and torchvision flavours)
inception_v3   the factorized Inception of "Rethinking the Inception Architecture", Table 1
layers         conv block, outputs, option checking and initialisation shared by both
registry       the presets of configs/model/: build_model("inception_v1", num_classes=10)
convert        torchvision weights into the *_torchvision presets
summary        per-stage shapes, parameters and multiply-adds
"""
from .convert import load_torchvision_weights
from .inception_v1 import GoogLeNet, GoogLeNetConfig
from .inception_v3 import FactorizedInception, FactorizedInceptionConfig
from .layers import InceptionOutputs
from .registry import INPUT_SIZE, PRESETS, build_from_config, build_model, preset_config

__all__ = [
    "FactorizedInception", "FactorizedInceptionConfig", "GoogLeNet", "GoogLeNetConfig", "INPUT_SIZE",
    "InceptionOutputs", "PRESETS", "build_from_config", "build_model", "load_torchvision_weights", "preset_config",
]
