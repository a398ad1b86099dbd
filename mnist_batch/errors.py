"""Exceptions that the command line turns into one clear error line and exit code 2."""


class MnistBatchError(Exception):
    """Base class of the errors a user can fix (bad input, bad argument)."""


class DataError(MnistBatchError, ValueError):
    """A data set is missing, corrupt or inconsistent.

    The message names the file and the problem, e.g.
    ``"/data/train-images-idx3-ubyte: wrong magic number 0x00000801 (expected 0x00000803)"``.
    """
