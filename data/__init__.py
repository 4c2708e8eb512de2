"""The data pipeline: datasets, transforms, multi-crop views, loaders and the embedded sample set."""
