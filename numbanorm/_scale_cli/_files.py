"""File input and output of ``numbanorm scale``: the sources (a memory-mapped .npy read one
window of rows at a time, in-memory arrays) and sinks the passes read and write, CSV parsing,
the statistics JSON file, and the atomic writes (a temporary file next to the output, renamed
over it only when the whole run succeeded).
"""
import csv
import json
import math
import os
import tempfile

import numpy as np

from ._common import STATS_VERSION, ScaleError, _one_line, _unlink


# --------------------------------------------------------------------------- sources and sinks


class _NpySource:
    """A .npy file mapped one window of rows at a time (the C-order view of the array)."""

    def __init__(self, path):
        fmt = np.lib.format
        try:
            with open(path, "rb") as f:
                version = fmt.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = fmt.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = fmt.read_array_header_2_0(f)
                else:
                    shape, fortran, dtype = fmt._read_array_header(f, version)
                self.offset = f.tell()
        except OSError:
            raise
        except Exception as e:
            raise ScaleError(f"{path}: not a valid .npy file ({_one_line(e)})") from None
        if dtype.hasobject:
            raise ScaleError(f"{path}: holds Python objects (pickled data), not numbers")
        if not shape:
            raise ScaleError(f"{path}: a 0-d array (a single number): nothing to scale")
        self.path = path
        self.dtype = np.dtype(dtype)
        self.fortran = bool(fortran) and len(shape) > 1
        self.orig_shape = tuple(shape)
        self.shape = tuple(reversed(shape)) if self.fortran else tuple(shape)  # C view
        need = self.offset + self.dtype.itemsize * math.prod(self.shape)
        if os.path.getsize(path) < need:
            raise ScaleError(f"{path}: truncated .npy file ({os.path.getsize(path)} bytes, header says {need})")

    def rows(self, r0, r1):
        if math.prod(self.shape) == 0:
            return np.zeros(self.shape, self.dtype)[r0:r1]
        row = self.dtype.itemsize * math.prod(self.shape[1:])
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset + r0 * row,
                         shape=(r1 - r0,) + self.shape[1:])

    def whole(self):
        return np.asarray(self.rows(0, self.shape[0]))


class _ArraySource:
    """An in-memory array (npz member, CSV table)."""

    def __init__(self, a, what):
        if a.ndim == 0:
            raise ScaleError(f"{what}: a 0-d array (a single number): nothing to scale")
        if a.dtype.hasobject:
            raise ScaleError(f"{what}: holds Python objects, not numbers")
        self.a = a
        self.dtype = a.dtype
        self.fortran = False
        self.shape = self.orig_shape = a.shape

    def rows(self, r0, r1):
        return self.a[r0:r1]

    def whole(self):
        return self.a


class _NpySink:
    """The output .npy: created with ``open_memmap`` in a temporary file, written by windows."""

    def __init__(self, tmp, src, dtype):
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=src.orig_shape,
                                       fortran_order=src.fortran)
        self.offset = mm.offset
        self.dtype = np.dtype(dtype)
        self.shape = src.shape
        self.tmp = tmp
        del mm

    def rows(self, r0, r1):
        if math.prod(self.shape) == 0:
            return np.empty((r1 - r0,) + self.shape[1:], self.dtype)
        row = self.dtype.itemsize * math.prod(self.shape[1:])
        return np.memmap(self.tmp, dtype=self.dtype, mode="r+", offset=self.offset + r0 * row,
                         shape=(r1 - r0,) + self.shape[1:])


class _ArraySink:
    def __init__(self, shape, dtype):
        self.a = np.empty(shape, dtype)
        self.shape = shape

    def rows(self, r0, r1):
        return self.a[r0:r1]


def _flush(a):
    if isinstance(a, np.memmap):
        a.flush()


# --------------------------------------------------------------------------- atomic writes


def _check_writable_dir(path, what):
    """ScaleError naming the user's ``path`` when its folder is missing or not a folder."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(d):
        raise ScaleError(f"{what} {path}: no such directory {os.path.dirname(path) or d}")
    if os.path.isdir(path):
        raise ScaleError(f"{what} {path}: is a directory")


def _tmp_path(out):
    """A new temporary file next to ``out`` (renamed over it on success); errors name ``out``."""
    d = os.path.dirname(os.path.abspath(out)) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out) + ".", suffix=".tmp", dir=d)
    except OSError as e:
        raise ScaleError(f"{out}: cannot write here ({e.strerror or _one_line(e)})") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give OUT the usual permissions
    return tmp


def _write_json_tmp(path, d):
    """``d`` as JSON in a temporary file next to ``path``; returns the temporary's path
    (renamed over ``path`` by the caller once everything else succeeded)."""
    tmp = _tmp_path(path)
    try:
        with open(tmp, "w") as f:
            json.dump(d, f, indent=1)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


# --------------------------------------------------------------------------- reading


def _load_stats(path):
    try:
        with open(path) as f:
            d = json.load(f)
    except OSError as e:
        raise ScaleError(f"--load-stats {path}: {e.strerror or _one_line(e)}") from None
    except ValueError as e:
        raise ScaleError(f"--load-stats {path}: not a JSON file ({_one_line(e)})") from None
    if not isinstance(d, dict) or d.get("numbanorm_scale_stats") != STATS_VERSION:
        raise ScaleError(f"--load-stats {path}: not a numbanorm scale statistics file")
    return d


def _parse_csv(path):
    """(header or None, float64 table) with one-line errors for ragged or non-numeric rows."""
    try:
        f = open(path, newline="")
    except OSError:
        raise
    with f:
        try:
            rows = list(csv.reader(f))
        except (csv.Error, UnicodeDecodeError) as e:
            raise ScaleError(f"{path}: not a readable CSV file ({_one_line(e)})") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise ScaleError(f"{path}: no data")

    def num(c):
        c = c.strip()
        return math.nan if c == "" else float(c)

    header = None
    try:
        [num(c) for c in rows[0]]
    except ValueError:
        header, rows = rows[0], rows[1:]
        if not rows:
            raise ScaleError(f"{path}: a header but no data rows")
    width = len(header) if header is not None else len(rows[0])
    table = np.empty((len(rows), width))
    start = 2 if header is not None else 1
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ScaleError(f"{path}: line {i + start}: {len(r)} columns, expected {width} (wrong columns)")
        try:
            table[i] = [num(c) for c in r]
        except ValueError:
            bad = next(c for c in r if not _is_number(c))
            raise ScaleError(f"{path}: line {i + start}: non-numeric value {bad.strip()!r}") from None
    return header, table


def _is_number(c):
    try:
        c = c.strip()
        if c:
            float(c)
        return True
    except ValueError:
        return False
