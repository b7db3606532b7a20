"""The code of the generated Kaggle kernel (`kernel_code.py`); `vidkit.kernel` fills in its bundle slug."""
