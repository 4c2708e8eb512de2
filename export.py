"""Export a model for deployment: python export.py ckpt=PATH format=onnx|pt2 [output=...]"""
import hydra

from googlenet import cli


@hydra.main(config_path="configs", config_name="export", version_base="1.3")
def main(cfg):
    return cli.export_task(cfg)


if __name__ == "__main__":
    cli.main(main, "export")
