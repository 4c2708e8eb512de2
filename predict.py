"""Predict the classes of images: python predict.py ckpt=PATH images=PHOTO_OR_FOLDER [topk=5] [crops=1|10|144]"""
import hydra

from googlenet.cli import command, tasks
from googlenet.cli.job import Session

session = Session("predict", "predict.py")


@hydra.main(config_path="configs", config_name="predict", version_base="1.3")
def main(cfg):
    return tasks.predict(cfg, session)


if __name__ == "__main__":
    command.run(main, session)
