"""Evaluate a checkpoint with 1, 10 or 144 crops: python evaluate.py ckpt=PATH crops=144 [key=value ...]"""
import hydra

from googlenet.cli import command, tasks
from googlenet.cli.job import Session

session = Session("evaluate", "evaluate.py")


@hydra.main(config_path="configs", config_name="evaluate", version_base="1.3")
def main(cfg):
    return tasks.evaluate(cfg, session)


if __name__ == "__main__":
    command.run(main, session)
