"""Evaluation: 1, 10 and 144 crops, single models and ensembles, the GoogLeNet paper's Table 3.

models   what ckpt= names (a file, a list, a glob): train.py checkpoints or torchvision weights
passes   one pass over the split: every model on every crop mode, each image decoded once
probs    per-model probabilities saved (save_probs=true) and recombined (probs=[...]) without a network
table    the report: models x crops, errors and cost, as text, Markdown and a PNG plot
run      evaluate.py's task: configuration checks, the pass, the files written
"""
from .models import LoadedModel, expand_paths, load_for_eval
from .run import check_evaluation_config, evaluate, run_evaluation

__all__ = ["LoadedModel", "check_evaluation_config", "evaluate", "expand_paths", "load_for_eval", "run_evaluation"]
