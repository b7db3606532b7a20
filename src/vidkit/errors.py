"""One exception type for user-facing errors: the CLI prints its message on one line and exits 2."""


class VidkitError(Exception):
    pass
