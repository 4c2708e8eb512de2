"""Print a model summary: python -m googlenet.models inception_v1 [--size 224] [--num-classes 1000]."""
import argparse
import sys

from common.errors import UserError

from .registry import PRESETS
from .summary import summarize_preset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m googlenet.models", description=__doc__)
    parser.add_argument("name", nargs="*", default=list(PRESETS), help=f"presets: {', '.join(PRESETS)}")
    parser.add_argument("--size", type=int, default=None, help="input resolution (default: the preset's)")
    parser.add_argument("--num-classes", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        for name in args.name:
            print(summarize_preset(name, args.size, num_classes=args.num_classes), end="\n\n")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
