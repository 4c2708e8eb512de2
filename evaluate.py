"""Evaluate a checkpoint with 1, 10 or 144 crops: python evaluate.py ckpt=PATH crops=144 [key=value ...]"""
import hydra

from googlenet import cli


@hydra.main(config_path="configs", config_name="evaluate", version_base="1.3")
def main(cfg):
    return cli.evaluate_task(cfg)


if __name__ == "__main__":
    cli.main(main, "evaluate")
