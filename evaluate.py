"""Evaluate a checkpoint with 1, 10 or 144 crops: python evaluate.py ckpt=PATH crops=144 [key=value ...]"""
import sys

from googlenet.cli import run
from googlenet.evaluation import evaluate

if __name__ == "__main__":
    sys.exit(run("evaluate", evaluate, script="evaluate.py"))
