"""Train GoogLeNet / Inception: python train.py model=inception_v1 data.root=/data/imagenet [key=value ...]"""
import hydra

from googlenet.cli import command, tasks
from googlenet.cli.job import Session

session = Session("train", "train.py")


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg):
    return tasks.train(cfg, session)


if __name__ == "__main__":
    command.run(main, session)
