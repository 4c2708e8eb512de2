"""Generate the embedded sample set (what `data=sample` uses) into a folder.

    python scripts/make_sample_data.py [ROOT] [--seed 0]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.sample import default_root, ensure_sample_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default=None, help=f"output folder (default: {default_root()})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = ensure_sample_data(args.root, args.seed)
    print(f"sample set ready at {root}")


if __name__ == "__main__":
    main()
