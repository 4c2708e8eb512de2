"""Hydra multirun: the basic launcher, submitit's local launcher, the Optuna sweeper (requirements-hydra.txt)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from helpers import ROOT, installed, run_script

from googlenet.cli.config import compose_config
from googlenet.evaluation import evaluate

TINY_SAMPLE_RUN = ["data=sample", "trainer.epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                   "data.crop_size=32", "data.eval_resize=36", "data.batch_size=8", "trainer.progress=false"]
needs_plugin = {name: pytest.mark.skipif(not installed(module),
                                         reason=f"needs {name} (pip install -r requirements-hydra.txt)")
                for name, module in [("submitit", "hydra_plugins.hydra_submitit_launcher"),
                                     ("optuna", "hydra_plugins.hydra_optuna_sweeper")]}


def check_job(sweep_dir, job: int, override: str):
    run_dir = sweep_dir / str(job)
    assert yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())[0] == override
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "completed" and record["metric"] == "top1"
    assert record["value"] == record["metrics"]["val_top1"]
    assert record["provenance"]["world_size"] == 1 and "train.py" in record["provenance"]["command"]


def summary_of(result) -> list[str]:
    return result.stdout[result.stdout.index("sweep summary"):].splitlines()


def test_multirun_gives_each_job_its_run_dir_and_prints_a_summary(tmp_path, capsys):
    # the paper's ensemble recipe at small size: models that differ only in their seed, then one evaluation
    sweep_dir = tmp_path / "sweep"
    result = run_script("train.py", "-m", "seed=0,1", *TINY_SAMPLE_RUN, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = summary_of(result)
    assert summary[0] == f"sweep summary (2 job(s), {sweep_dir}):"
    for job in (0, 1):
        check_job(sweep_dir, job, f"seed={job}")
        assert summary[1 + job].startswith(f"  job {job} seed={job}: completed, val_top1 ")
        assert summary[1 + job].endswith(f"| {sweep_dir / str(job)}")
    # a second sweep into the same folder: its jobs are refused by the finished runs there, which keep their
    # records; its summary lists its own jobs only, and its exit status says they failed
    records = {p: p.read_bytes() for p in [*sweep_dir.glob("*/.hydra/*"), *sweep_dir.glob("*/*.json"),
                                             *sweep_dir.glob("*/checkpoints/*")]}
    again = run_script("train.py", "-m", "seed=5,6", *TINY_SAMPLE_RUN, f"hydra.sweep.dir={sweep_dir}")
    assert again.returncode == 1, again.stdout[-3000:] + again.stderr[-3000:]
    changed = [str(p) for p, content in records.items() if p.read_bytes() != content]
    assert changed == [], changed
    summary = summary_of(again)
    assert summary[0] == f"sweep summary (2 job(s), {sweep_dir}):" and len(summary) == 3
    for job in (0, 1):
        assert summary[1 + job].startswith(f"  job {job} seed={5 + job}: failed: {sweep_dir / str(job)} already "
                                           "holds checkpoints")
    assert evaluate(compose_config("evaluate", [f"ckpt={sweep_dir}/*/checkpoints/best.pt", "crops=all",
                                                "limit_batches=1", "data.batch_size=4", "data.workers=0"])) == 0
    printed = capsys.readouterr().out
    report = json.loads((sweep_dir / "ensemble2.eval-val-allcrops.json").read_text())
    assert [(r["models"], r["crops"], r["cost"]) for r in report["table"]] == [
        (1, 1, 1), (1, 10, 10), (1, 144, 144), (2, 1, 2), (2, 10, 20), (2, 144, 288)]
    assert report["images"] == 4 and "an ensemble of 2 models" in printed


@needs_plugin["submitit"]
def test_a_sweep_through_submitit_local_reports_its_failed_job(tmp_path):
    # the jobs run in processes of their own: the sweep's summary and exit status come from what they recorded
    sweep_dir, bad = tmp_path / "sweep", tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    result = run_script("train.py", "-m", "hydra/launcher=submitit_local", f"finetune.weights=null,{bad}",
                        *TINY_SAMPLE_RUN, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    check_job(sweep_dir, 0, "finetune.weights=null")
    summary = summary_of(result)
    assert summary[1].startswith("  job 0 finetune.weights=null: completed, val_top1 ")
    assert summary[2].startswith(f"  job 1 finetune.weights={bad}: failed: finetune.weights {bad} is corrupt")


def test_a_stop_signal_stops_the_whole_sweep(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "seed=0,1", *TINY_SAMPLE_RUN, "trainer.epochs=40"]
    with open(tmp_path / "out.txt", "w") as output:
        proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args, f"hydra.sweep.dir={sweep_dir}"],
                                cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        last = sweep_dir / "0" / "checkpoints" / "last.pt"
        deadline = time.time() + 120
        while not last.exists() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(0.3)  # as in test_signals.py: into the next epoch
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        finally:
            proc.kill()
    out = (tmp_path / "out.txt").read_text()
    assert proc.returncode == 3, out  # incomplete
    summary = out[out.index("sweep summary"):].splitlines()
    assert summary[1].startswith("  job 0 seed=0: stopped") and summary[2].startswith("  job 1 seed=1: not run")
    assert summary[3] == ("the sweep was stopped before every job finished; continue it with: python train.py "
                          f"{' '.join(args)} resume=auto hydra.sweep.dir={sweep_dir}")
    assert json.loads((sweep_dir / "0" / "result.json").read_text())["status"] == "stopped"
    assert not (sweep_dir / "1").exists()  # the job that never started left nothing


@needs_plugin["optuna"]
def test_optuna_search_goes_on_after_a_failed_trial_and_reports_the_best_value(tmp_path):
    # with the preset's seed, TPE tries the bad learning rate first: that trial fails, the search goes on
    sweep_dir = tmp_path / "search"
    result = run_script("train.py", "hparams_search=sample_optuna", "hydra.sweeper.n_trials=2",
                        "optim.lr=choice(1e12,0.05)", *TINY_SAMPLE_RUN, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]  # one job failed
    assert "optim.lr=1000000000000.0 must be <= " in result.stdout
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    completed = [json.loads(p.read_text()) for p in sweep_dir.glob("*/result.json")]
    assert len(completed) == 1 and best["best_value"] == completed[0]["value"]
    assert best["best_params"]["optim.lr"] == 0.05 and 1e-5 <= best["best_params"]["optim.weight_decay"] <= 1e-3


@needs_plugin["optuna"]
def test_a_preset_that_sets_multirun_is_checked_as_a_sweep(tmp_path):
    from googlenet.cli.precheck import check_command_line
    checked = check_command_line("train", ["hparams_search=sample_optuna", f"hydra.sweep.dir={tmp_path}"], False)
    assert checked.sweep_dir == tmp_path  # hydra.mode=MULTIRUN from the preset, no -m on the command line
