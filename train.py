"""Train GoogLeNet / Inception: python train.py model=inception_v1 data.root=/data/imagenet [key=value ...]"""
import hydra

from googlenet import cli


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg):
    return cli.train_task(cfg)


if __name__ == "__main__":
    cli.main(main, "train")
