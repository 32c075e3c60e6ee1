"""Helpers shared by the public functions: canonical views and output buffers."""
import math

from .. import _pool


def canonical(dev, x, shape2, ctype):
    """``x`` as a C-contiguous ``ctype`` array of shape ``shape2`` (copied only if needed)."""
    return dev.contiguous(x, ctype).reshape(shape2)


def prod(shape):
    return math.prod(shape)


class Output:
    """Where a kernel writes a result of ``shape`` (given to the kernel as ``shape2``).

    With ``out=`` of the compute dtype and C-contiguous, the kernel writes straight into
    it. Otherwise the kernel writes a scratch buffer that :meth:`result` casts/copies into
    ``out`` — after every check has passed, so a failed call never touches ``out``.
    ``out`` sharing memory with any of ``inputs`` (the arrays the kernel reads: data,
    parameters, saved statistics) also goes through the scratch buffer, as NumPy's ufuncs
    do, so a partially overlapping ``out`` (``x`` shifted by a row, a view of a buffer
    that also holds ``weight``) never changes an input before the kernel has read it.
    The one exception is ``inplace=True`` with ``out`` exactly ``inputs[0]`` (see
    :func:`clobbers`): the forward kernels read each row/block before writing it, so
    ``out=x`` stays a direct write.
    """

    __slots__ = ("dev", "user_out", "out", "shape", "ctype", "rtype", "buf", "direct")

    def __init__(self, dev, user_out, out, shape, shape2, ctype, rtype, inputs=(), inplace=False):
        self.dev, self.user_out, self.out = dev, user_out, out
        self.shape, self.ctype, self.rtype = shape, ctype, rtype
        self.direct = (
            out is not None and out.dtype == ctype and dev.is_contiguous(out)
            and not clobbers(dev, out, inputs, inplace)
        )
        if self.direct:
            self.buf = out.reshape(shape2)
        elif out is None and dev.name == "cpu":  # returned to the caller: recycled (see _pool)
            self.buf = _pool.empty(shape2, ctype)
        else:
            self.buf = dev.empty(shape2, ctype)

    def result(self):
        if self.out is None:
            y = self.buf.reshape(self.shape)
            if self.rtype != self.ctype:
                y = self.dev.astype(y, self.rtype)
            return self.dev.wrap(y)
        if not self.direct:
            self.dev.copyto(self.out, self.buf.reshape(self.shape))
        if self.out is not self.user_out:
            # host out= forced onto the GPU (force_device): ``out`` is its device copy
            self.dev.copy_back(self.user_out, self.out)
        return self.user_out


def clobbers(dev, out, inputs, inplace=False):
    """Whether a kernel writing ``out`` directly could change memory it reads from ``inputs``.

    Any possible overlap counts (``may_share_memory``: memory bounds on the host, pointer
    ranges on the device; None entries are skipped), except, with ``inplace``, ``out``
    being exactly ``inputs[0]``: the same memory, shape, strides and dtype
    (``dev.same_array``), which a kernel that reads a row/block before writing it may
    overwrite.
    """
    exact_ok = inplace
    for a in inputs:
        if a is not None and dev.may_share_memory(out, a) and not (exact_ok and dev.same_array(out, a)):
            return True
        exact_ok = False
    return False


def check_disjoint(fn, dev, **outputs):
    """``ValueError`` when two arrays a call writes (``out``, running statistics) share memory.

    Two results cannot both be stored in one place; raised before anything is written.
    None entries are skipped.
    """
    items = [(k, v) for k, v in outputs.items() if v is not None]
    for i, (na, a) in enumerate(items):
        for nb, b in items[i + 1:]:
            if dev.shares_memory(a, b):  # exact: interleaved views of one buffer are fine
                raise ValueError(
                    f"{fn}(): arguments '{na}' and '{nb}' must not share memory (both are written "
                    "by this call), got overlapping arrays"
                )


def stat_result(dev, a, shape, rtype=None):
    """A statistics array reshaped to ``shape`` and wrapped for the caller."""
    a = a.reshape(shape)
    if rtype is not None and a.dtype != rtype:
        a = dev.astype(a, rtype)
    return dev.wrap(a)
