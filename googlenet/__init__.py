"""GoogLeNet / Inception ImageNet trainer: the library behind train.py, evaluate.py, predict.py and export.py.

models/       the networks next to the papers' tables, presets, torchvision weights, summaries
training/     the training loop and its parts (step, state, loss, optim, schedule, ema, checkpoints of a run)
evaluation/   1/10/144 crops, ensembles, saved probabilities, the paper's Table 3
deploy/       prediction on image files; ONNX and torch.export
cli/          the commands: checks before Hydra, the task functions, sweeps, the torchrun launcher

Shared by all of them:
checkpoint    checkpoint files: written atomically, read safely, and which weights in a file to use
runtime       device, precision (auto bf16), memory format, backend flags, seeds
distributed   torchrun / submitit / srun environment, process group, DDP wrapping, collectives
provenance    where a number came from: code version, libraries, device, processes, command

Below this package: `data` (the data pipeline) and `common` (errors, config checks, files, seeds).
"""
