"""Predict the classes of images: python predict.py ckpt=PATH images=PHOTO_OR_FOLDER [topk=5] [crops=1|10|144]"""
import hydra

from googlenet import cli


@hydra.main(config_path="configs", config_name="predict", version_base="1.3")
def main(cfg):
    return cli.predict_task(cfg)


if __name__ == "__main__":
    cli.main(main, "predict")
