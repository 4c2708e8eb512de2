"""GoogLeNet / Inception ImageNet trainer: the library behind train.py, evaluate.py, predict.py and export.py.

models/          the networks next to the papers' tables, presets, torchvision weights, summaries
cli              the Hydra entry points' plumbing: checks before Hydra starts, one-line errors, exit status
hydra_callbacks  an agreed ${now} under torchrun; the summary line per job of a sweep
config           compose a config from overrides (tests, tools) and list each group's checks
runtime          device, precision (auto bf16), memory format, backend flags, seeds
distributed      torchrun / submitit / srun environment, process group, DDP wrapping, collectives
trainer          the training loop (Trainer), built from the pieces below
step             one optimizer step: the aux losses forward and backward, accumulation, the update
state            the run's position, the checkpoint dict that holds it, and the resume checks
checkpoint       safe checkpoint files; the run's last/best/epoch checkpoints
rundir           one writer per run directory, leftovers of killed saves removed
meters           device-side running sums and per-interval timing
stopping         stop signals and ranks agreeing to stop
validation       loss / top-1 / top-5 on the validation split during training
report           what the loop prints and logs (summary, scalars, epoch lines, hparams)
runlog           console, train.log, TensorBoard and tqdm (rank 0 only)
finetune         model.weights, model.freeze and the classifier heads
loss, optim, schedule, ema    the aux loss, optimizers, learning-rate schedules, weight averaging
evaluation/      1/10/144 crops, ensembles, saved probabilities, the paper's Table 3
predict, export  top-k classes of image files; ONNX and torch.export, checked against the eager model
launch           torchrun with a truthful exit status after a signalled stop
"""
