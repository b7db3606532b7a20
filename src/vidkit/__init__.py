"""vidkit: a Kaggle submission kit for video classification."""
import os

# albumentations asks PyPI for a newer version when it is imported: a network call (a time-out with the
# internet off, as in a Kaggle kernel) on every run. Set before any vidkit module imports it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
__version__ = "0.1.0"
