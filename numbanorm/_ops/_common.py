"""Helpers shared by the public functions: canonical views and output buffers."""
import math


def canonical(dev, x, shape2, ctype):
    """``x`` as a C-contiguous ``ctype`` array of shape ``shape2`` (copied only if needed)."""
    return dev.contiguous(x, ctype).reshape(shape2)


def prod(shape):
    return math.prod(shape)


class Output:
    """Where a kernel writes a result of ``shape`` (given to the kernel as ``shape2``).

    With ``out=`` of the compute dtype and C-contiguous, the kernel writes straight into
    it (``out`` may be ``x``: the row/channel kernels read a block before writing it).
    Otherwise the kernel writes a scratch buffer that :meth:`result` casts/copies into
    ``out`` — after every check has passed, so a failed call never touches ``out``.
    ``out`` overlapping one of ``inputs`` (the backward kernels, which read their inputs
    more than once) also goes through the scratch buffer.
    """

    __slots__ = ("dev", "user_out", "out", "shape", "ctype", "rtype", "buf", "direct")

    def __init__(self, dev, user_out, out, shape, shape2, ctype, rtype, inputs=()):
        self.dev, self.user_out, self.out = dev, user_out, out
        self.shape, self.ctype, self.rtype = shape, ctype, rtype
        self.direct = (
            out is not None and out.dtype == ctype and dev.is_contiguous(out)
            and not any(dev.may_share_memory(out, a) for a in inputs)
        )
        self.buf = out.reshape(shape2) if self.direct else dev.empty(shape2, ctype)

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


def stat_result(dev, a, shape, rtype=None):
    """A statistics array reshaped to ``shape`` and wrapped for the caller."""
    a = a.reshape(shape)
    if rtype is not None and a.dtype != rtype:
        a = dev.astype(a, rtype)
    return dev.wrap(a)
