"""Entry-point plumbing shared by train.py and evaluate.py: overrides in, one-line errors out."""
from __future__ import annotations

import sys
from typing import Callable

from omegaconf import OmegaConf

from .errors import UserError

HELP = """usage: python {script} [group=option ...] [key=value ...] [--cfg]

Hydra-style overrides, e.g.  model=inception_v2 data=sample optim.lr=0.05 trainer.epochs=10
  --cfg      print the composed config and exit
Config groups and options live in configs/ (see README "Configuration")."""


def run(config_name: str, main: Callable, argv: list[str] | None = None, script: str = "") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(HELP.format(script=script or f"{config_name}.py"))
        return 0
    show_config = "--cfg" in argv
    overrides = [a for a in argv if a != "--cfg"]
    from .config import compose_config
    try:
        cfg = compose_config(config_name, overrides)
        if show_config:
            print(OmegaConf.to_yaml(cfg))
            return 0
        return main(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
