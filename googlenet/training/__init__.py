"""Training (train.py): the loop and what it is made of.

trainer     Trainer: builds a run from its config, runs the epochs, validates, checkpoints, resumes
position    where a run is: epoch, batch, optimizer step, samples (what the schedule and a resume read)
step        one optimizer step: the aux losses forward and backward, accumulation, the update
state       the run's state, the checkpoint dict that holds it, and the resume checks
validation  loss / top-1 / top-5 on the validation split
loss        CE(main) + aux_weight * sum(CE(aux)); top-k hits
optim       SGD, RMSProp (and TensorFlow's), parameter groups, lr scaling
schedule    warmup, cosine / step / multistep / the paper's x0.96 every 8 epochs
ema         the Polyak / exponential moving average of the weights
finetune    finetune.weights, finetune.freeze: starting from other weights
meters      device-side running sums, read once per log interval; interval timing
stopping    stop signals and ranks agreeing to stop
rundir      one writer per run directory, leftovers of killed saves removed
runlog      console, train.log, TensorBoard and tqdm (rank 0 only)
report      what the loop prints and logs (start summary, interval scalars, epoch lines, hparams)
"""
