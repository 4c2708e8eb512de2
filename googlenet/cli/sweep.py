"""A sweep's own record of its jobs, whatever launcher ran them: the summary, the exit status, and a stop that
stops the whole sweep.

Every job of a multirun writes `<sweep dir>/.jobs/<sweep id>/<job num>.json` (status, exit status, metrics,
run dir). The sweep id is new for each command and reaches the jobs through `hydra.job.env_set`, which Hydra
hands to every launcher's jobs, so a sweep into a folder that older sweeps used reads back only its own jobs,
and a job refused by another run's directory is recorded without writing into that directory.
"""
from __future__ import annotations

import json
import re
import shlex
import uuid
from pathlib import Path

from common.files import write_atomic

SWEEP_ENV = "GOOGLENET_SWEEP"
EXIT_FAILED, EXIT_INCOMPLETE = 1, 3
NOT_RUN = "not run"  # the status of a job that a stopped sweep never started


def new_sweep_id() -> str:
    return uuid.uuid4().hex[:12]


def sweep_overrides(sweep_dir: Path, sweep: str) -> list[str]:
    """What the command adds to a training sweep: its id for the jobs, and its directory resolved once (so that
    `${now:...}` in it means the same folder to the jobs and to the summary)."""
    # quoted: an id such as 123e45 or 0123 would otherwise reach the jobs as a number (inf, 123)
    return [f"hydra.sweep.dir={quoted(str(sweep_dir))}", f"++hydra.job.env_set.{SWEEP_ENV}={quoted(sweep)}"]


KILL_ON_BAD_EXIT = "export SLURM_KILL_BAD_EXIT=1"


def slurm_setup_override(setup: list[str] | None) -> str | None:
    """submitit's SLURM jobs run their tasks under srun with no agent above them: a task that fails (a user
    error only it sees, a crash) would leave the others waiting in a collective for dist.timeout_minutes.
    srun's --kill-on-bad-exit ends them at once; submitit passes no srun flags, so it goes in through the
    job's setup lines (SLURM_KILL_BAD_EXIT). None when not under submitit's SLURM launcher (`setup` None) or
    when the user's setup already decides it."""
    if setup is None or any("SLURM_KILL_BAD_EXIT" in line for line in setup):
        return None
    return "hydra.launcher.setup=[" + ",".join(quoted(line) for line in [*setup, KILL_ON_BAD_EXIT]) + "]"


def quoted(value: str) -> str:
    """A string as one value of Hydra's override grammar, whatever characters it holds."""
    # the grammar reads a backslash as an escape only before a quote or the closing quote
    return "'" + re.sub(r"(\\*)('|$)", lambda m: 2 * m[1] + ("\\'" if m[2] else ""), value) + "'"


def sweep_id(hydra_cfg) -> str | None:
    """The id of the sweep a job belongs to (None when it was not started by a training sweep of ours)."""
    return (hydra_cfg.job.get("env_set") or {}).get(SWEEP_ENV)


def records_dir(sweep_dir: Path, sweep: str) -> Path:
    return Path(sweep_dir) / ".jobs" / sweep


def write_job_record(sweep_dir: Path, sweep: str, num: int, record: dict) -> None:
    write_atomic(records_dir(sweep_dir, sweep) / f"{num}.json", json.dumps(record, indent=2) + "\n")


def read_job_records(sweep_dir: Path, sweep: str) -> list[dict]:
    records = []
    for path in records_dir(sweep_dir, sweep).glob("*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: r.get("job", 0))


def sweep_exit_code(records: list[dict]) -> int:
    """1 when a job failed, 3 when the sweep was stopped before every job finished, else 0."""
    if any(r.get("status") == "failed" for r in records):
        return EXIT_FAILED
    if any(r.get("status") in ("stopped", NOT_RUN) for r in records):
        return EXIT_INCOMPLETE
    return 0


def summary_lines(records: list[dict]) -> list[str]:
    shared = set.intersection(*(set(r.get("overrides") or []) for r in records)) if len(records) > 1 else set()
    lines = []
    for r in records:
        overrides = " ".join(o for o in r.get("overrides") or [] if o not in shared) or "(no overrides)"
        status = r.get("status", "?")
        if status == "failed":
            outcome = f"failed: {r.get('error')}"
        elif status == NOT_RUN:
            outcome = "not run: the sweep was stopped before it"
        else:
            metrics = r.get("metrics") or {}
            shown = [f"{k} {metrics[k]:.2f}" for k in ("val_top1", "val_top5", "val_ema_top1") if k in metrics]
            value = r.get("value")
            best = f"best {r.get('metric')} {value:.2f}" if isinstance(value, int | float) else "no validation"
            outcome = ", ".join([status, *shown, best]) if r.get("metric") else status
        lines.append(f"job {r.get('job')} {overrides}: {outcome} | {r.get('run_dir')}")
    return lines


def continue_command(script: str, args: list[str], sweep_dir: Path) -> str:
    """The command that finishes a stopped sweep: the same sweep, each job resumed from its own last.pt."""
    keep = [a for a in args if not a.lstrip("+").startswith(("resume=", "hydra.sweep.dir="))]
    return shlex.join(["python", script, *keep, "resume=auto", f"hydra.sweep.dir={sweep_dir}"])
