"""GoogLeNet / Inception ImageNet trainer: the library behind train.py and evaluate.py.

models/        the networks next to the papers' tables, presets, torchvision weights, summaries
config         compose a config from overrides and validate each group (checks live with their code)
cli            the Hydra entry points' plumbing: overrides in, one-line errors out
runtime        device, precision (autocast), memory format, backend flags, seeds
distributed    torchrun environment, process group, DDP wrapping, collectives
trainer        the training loop (Trainer), built from the pieces below
state          what a run's position is, and the checkpoint dict that holds it
checkpoint     atomic, safe checkpoint files; the run's last/best/epoch checkpoints
meters         device-side running sums and per-interval timing
stopping       signals, stop requests and ranks agreeing to stop
validation     loss / top-1 / top-5 on the validation split during training
report         what the loop prints and logs (summary, scalars, epoch lines, hparams)
runlog         console, train.log, TensorBoard and tqdm (rank 0 only)
loss, optim, schedule, ema    the aux loss, optimizers, learning-rate schedules, weight averaging
evaluation     1/10/144-crop evaluation of a checkpoint or torchvision weights
launch         torchrun with a clean exit status after a signalled stop
"""
