"""Hydra multirun: the basic launcher, submitit's local launcher, the Optuna sweeper (requirements-hydra.txt)."""
import json

import pytest
import yaml
from helpers import installed, run_script

from googlenet.cli.config import compose_config
from googlenet.evaluation import evaluate

TINY_SAMPLE_RUN = ["data=sample", "trainer.epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                   "data.crop_size=32", "data.eval_resize=36", "data.batch_size=8", "trainer.progress=false"]
needs_plugin = {name: pytest.mark.skipif(not installed(module),
                                         reason=f"needs {name} (pip install -r requirements-hydra.txt)")
                for name, module in [("submitit", "hydra_plugins.hydra_submitit_launcher"),
                                     ("optuna", "hydra_plugins.hydra_optuna_sweeper")]}


def check_two_job_sweep(result, sweep_dir):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for job, seed in (("0", 0), ("1", 1)):
        run_dir = sweep_dir / job
        assert yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())[0] == f"seed={seed}"
        assert (run_dir / "checkpoints" / "last.pt").is_file()
        record = json.loads((run_dir / "result.json").read_text())
        assert record["status"] == "completed" and record["metric"] == "top1"
        assert record["value"] == record["metrics"]["val_top1"]
        assert record["provenance"]["world_size"] == 1 and "train.py" in record["provenance"]["command"]
    summary = result.stdout[result.stdout.index("sweep summary"):].splitlines()
    assert summary[0] == f"sweep summary (2 job(s), {sweep_dir}):"
    for job in (0, 1):
        assert summary[1 + job].startswith(f"  job {job} seed={job}: completed, val_top1 ")
        assert summary[1 + job].endswith(f"| {sweep_dir / str(job)}")


def test_multirun_gives_each_job_its_run_dir_and_prints_a_summary(tmp_path, capsys):
    # the paper's ensemble recipe at small size: models that differ only in their seed, then one evaluation
    sweep_dir = tmp_path / "sweep"
    result = run_script("train.py", "-m", "seed=0,1", *TINY_SAMPLE_RUN, f"hydra.sweep.dir={sweep_dir}")
    check_two_job_sweep(result, sweep_dir)
    assert evaluate(compose_config("evaluate", [f"ckpt={sweep_dir}/*/checkpoints/best.pt", "crops=all",
                                                "limit_batches=1", "data.batch_size=4", "data.workers=0"])) == 0
    printed = capsys.readouterr().out
    report = json.loads((sweep_dir / "ensemble2.eval-val-allcrops.json").read_text())
    assert [(r["models"], r["crops"], r["cost"]) for r in report["table"]] == [
        (1, 1, 1), (1, 10, 10), (1, 144, 144), (2, 1, 2), (2, 10, 20), (2, 144, 288)]
    assert report["images"] == 4 and "an ensemble of 2 models" in printed


@needs_plugin["submitit"]
def test_the_same_sweep_through_submitit_local(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_script("train.py", "-m", "hydra/launcher=submitit_local", "seed=0,1", *TINY_SAMPLE_RUN,
                        f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    check_two_job_sweep(result, sweep_dir)


@needs_plugin["optuna"]
def test_optuna_search_on_the_sample_set_reports_the_best_value(tmp_path):
    sweep_dir = tmp_path / "search"
    result = run_script("train.py", "hparams_search=sample_optuna", "hydra.sweeper.n_trials=2", *TINY_SAMPLE_RUN,
                        f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    values = [json.loads((sweep_dir / job / "result.json").read_text())["value"] for job in ("0", "1")]
    assert best["best_value"] == max(values)
    assert set(best["best_params"]) == {"optim.lr", "optim.weight_decay"}
    assert 0.01 <= best["best_params"]["optim.lr"] <= 1.0
