"""The one use of Hydra's private modules: reading Hydra's own command-line flags before Hydra starts.

Hydra has no public parser for its flags (`-m`, `--cfg`, `--help`, ...). We ask for the one it uses itself, in
this one function; `tests/test_cli.py` fails with a clear message if a Hydra release moves or changes it.
"""
from __future__ import annotations

import argparse


def hydra_flags(argv: list[str]) -> argparse.Namespace:
    """Hydra's flags and overrides in `argv`, parsed as `@hydra.main` will parse them."""
    from hydra._internal.utils import get_args_parser
    args, _ = get_args_parser().parse_known_args(argv)
    return args
