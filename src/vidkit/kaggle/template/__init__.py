"""The code of the generated Kaggle kernel (`kernel_code.py`); `vidkit.kaggle.kernel` fills in its bundle slug."""
