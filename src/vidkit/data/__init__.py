from vidkit.data.dataset import VideoDataset
from vidkit.data.index import classes_of, index_test, index_train
from vidkit.data.layouts import find_media, test_ids
from vidkit.data.sampling import make_sampler
from vidkit.data.transforms import eval_transform, normalize, short_side, to_tensor, train_transform

__all__ = ["VideoDataset", "classes_of", "find_media", "index_test", "index_train", "test_ids",
           "make_sampler", "eval_transform", "normalize", "short_side", "to_tensor", "train_transform"]
