"""The command line: what train.py, evaluate.py, predict.py and export.py are made of.

command          the entry points' __main__: checks first, then the @hydra.main app, one-line errors, exit status
precheck         compose and validate what Hydra will run (every job of a sweep), probe the run dir
job              inside Hydra: the job, its records and result.json, a failed start cleaned up, the exit status
sweep            a training sweep's own job records: its summary, its exit status, a stop that stops it
tasks            the task function of each command
config           compose a config from overrides (tests, tools) and list each command's checks
hydra_callbacks  an agreed ${now} under torchrun, one sacct warning per sweep
hydra_private    the one use of Hydra's private modules (its flag parser), tested on its own
launch           torchrun with a truthful exit status after a signalled stop (python -m googlenet.cli.launch)
"""
