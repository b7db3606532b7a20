"""vidkit: a Kaggle submission kit for video classification."""
__version__ = "0.1.0"
