"""GoogLeNet (Inception v1) and the factorized Inception v2/v3."""
from .convert import load_torchvision_weights
from .inception_v1 import GoogLeNet, GoogLeNetConfig
from .inception_v3 import FactorizedInception, FactorizedInceptionConfig
from .layers import InceptionOutputs
from .registry import INPUT_SIZE, PRESETS, build_model, preset_config

__all__ = [
    "FactorizedInception", "FactorizedInceptionConfig", "GoogLeNet", "GoogLeNetConfig", "INPUT_SIZE",
    "InceptionOutputs", "PRESETS", "build_model", "load_torchvision_weights", "preset_config",
]
