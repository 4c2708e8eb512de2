"""The task functions of train.py, evaluate.py, predict.py and export.py: what each command does inside Hydra."""
from __future__ import annotations

from omegaconf import DictConfig, open_dict

from common.errors import UserError

from ..training.state import RunResult
from .job import Job, Session, write_result


def train(cfg: DictConfig, session: Session):
    """Trains; returns the best value of the configured validation metric (what sweepers optimise)."""
    from ..training.trainer import train as train_run

    def body(cfg: DictConfig, job: Job) -> RunResult:
        with open_dict(cfg):
            cfg.run_dir = str(job.run_dir)
        try:
            result = train_run(cfg, resume_command=job.resume_command(),
                               on_run_dir=lambda: job.write_records(session.precheck.records_subdir))
        except UserError:
            if not job.multirun:  # a sweep's job records its failure in the sweep's records (sweep.py)
                session.remove_failed_start(job.run_dir)
            raise
        write_result(job, result, cfg.trainer.best_metric)
        return result

    return session.run_task(cfg, body)


def evaluate(cfg: DictConfig, session: Session):
    from ..evaluation import evaluate as evaluate_run
    return session.run_task(cfg, lambda cfg, job: RunResult(evaluate_run(cfg)))


def predict(cfg: DictConfig, session: Session):
    from ..deploy.predict import run_predict
    return session.run_task(cfg, lambda cfg, job: RunResult(run_predict(cfg)))


def export(cfg: DictConfig, session: Session):
    from ..deploy.export import run_export
    return session.run_task(cfg, lambda cfg, job: RunResult(run_export(cfg)))
