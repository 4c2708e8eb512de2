"""Export a model for deployment: python export.py ckpt=PATH format=onnx|pt2 [output=...]"""
import hydra

from googlenet.cli import command, tasks
from googlenet.cli.job import Session

session = Session("export", "export.py")


@hydra.main(config_path="configs", config_name="export", version_base="1.3")
def main(cfg):
    return tasks.export(cfg, session)


if __name__ == "__main__":
    command.run(main, session)
