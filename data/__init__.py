"""The data pipeline (below `googlenet`: it imports nothing from it; it uses `common`).

datasets       ROOT/<split>/<class>/* folders that survive unreadable files
transforms     the paper's training augmentation and the evaluation centre crop, per image
multicrop      the 1, 10 and 144-crop views of evaluation
samplers       rank-sharded, per-epoch seeded orders that can start mid-epoch
loaders        DataLoaders from the `data` config group (and its validation)
workers        data.workers: a number of loader processes, or auto (the cores this process has)
device_ops     batch operations on the training device: photometric distortions, normalisation, lighting
dali           the same pipeline on NVIDIA DALI (data.loader=dali): nvJPEG decoding, GPU crops
imaging        decoding any image file to RGB
classes        ImageNet class order and names
sample         the embedded sample set (data=sample)
synthetic      random batches for compute-only benchmarks
"""
