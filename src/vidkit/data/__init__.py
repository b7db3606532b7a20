from vidkit.data.index import classes_of, index_test, index_train
from vidkit.data.layouts import find_media, test_ids
from vidkit.data.sampling import make_sampler

# The dataset and the transforms import torch and albumentations (seconds): loaded on first use, so that the
# verbs that only index or check the data (check, folds, frames, validate) never import them.
LAZY = {"VideoDataset": "dataset", "eval_transform": "transforms", "normalize": "transforms",
        "short_side": "transforms", "to_tensor": "transforms", "train_transform": "transforms"}

__all__ = ["VideoDataset", "classes_of", "find_media", "index_test", "index_train", "test_ids",
           "make_sampler", "eval_transform", "normalize", "short_side", "to_tensor", "train_transform"]


def __getattr__(name: str):
    if name not in LAZY:
        raise AttributeError(f"module 'vidkit.data' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"vidkit.data.{LAZY[name]}"), name)
