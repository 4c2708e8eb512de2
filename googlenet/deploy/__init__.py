"""Using trained models: predict.py and export.py.

predict   top-k classes of image files (1, 10 or 144 crops), JSON and CSV
export    ONNX and torch.export with a uint8 input contract, checked against the eager model
"""
