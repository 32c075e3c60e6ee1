"""What every part of ``numbanorm scale`` shares: the methods, formats and chunk size,
:class:`ScaleError` (a user-facing error: one line on stderr, exit status 1) and the helpers
that make one-line messages and remove temporary files.
"""
import os

METHODS = ("zscore", "minmax", "l2", "layer")
FORMATS = (".npy", ".npz", ".csv")
#: bytes of input per chunk when --chunk-rows is not given
CHUNK_BYTES = 32 * 1024 * 1024
STATS_VERSION = 1
#: ``--axis none``: every axis (Python's ``axis=None``); an absent ``--axis`` is None
ALL_AXES = "all"


class ScaleError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def _one_line(e):
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
