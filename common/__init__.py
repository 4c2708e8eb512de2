"""Helpers every layer uses (the lowest layer: it imports nothing from `data` or `googlenet`).

errors    UserError: a problem the user can fix, shown as one line
checks    config value checks that name the key and the allowed values
files     atomic writes (never half a file), writability probes, our temporary files
seeds     seeds for each purpose, derived from the run's seed
signals   the signals that stop a job, and handing one on to the launcher's own handler
progress  a progress line every 30 s for long passes off a terminal
host_syncs  watch code for what makes the host wait for a GPU (torch's sync debug mode; recorded ops on CPU)
"""
