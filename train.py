"""Train GoogLeNet / Inception: python train.py model=inception_v1 data.root=/data/imagenet [key=value ...]"""
import sys

from googlenet.cli import run
from googlenet.trainer import train

if __name__ == "__main__":
    sys.exit(run("train", train, script="train.py"))
