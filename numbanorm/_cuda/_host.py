"""The caller's stream and memory pool for one GPU call (issue 10, host path).

:class:`numbanorm._dispatch.CudaDevice` calls :func:`begin` with the call's data ``x``
before anything touches the device; until the next call on the same thread:

``stream()``
    what every kernel launches on (``kernel[grid, block, _host.stream()]``): the stream
    that ``x``'s ``__cuda_array_interface__`` (v3) names, which for CuPy is the caller's
    current stream (``get_current_stream()``); for PyTorch (whose interface is v2, without
    a stream) ``torch.cuda.current_stream(x.device)``; a Numba device array's own
    ``.stream``; the legacy default stream (0) otherwise. Launching there orders the kernels after the work that produced
    ``x`` without a host synchronisation, so arguments are imported with ``sync=False``.
``key()``
    a hashable id of that stream (per-stream caches: scratch buffers, constants).
``allocator()``
    None (Numba's allocator) or ``f(shape, dtype)`` returning a new array of the caller's
    library (CuPy: ``cupy.empty``, from CuPy's memory pool; PyTorch: ``torch.empty`` on
    ``x``'s device, from its caching allocator), which ``_layout.empty`` imports
    zero-copy.
``scratch(tag, shape, dtype, make)``
    a per-thread, per-stream cached buffer for per-call partials (``make(shape, dtype)``
    allocates it the first time). Reuse is safe: the buffer is only used by kernels on
    the same stream, which run in launch order, and no two threads share it. Give every
    buffer of one call its own ``tag``.

State is thread-local (``threading.local``), so threads with different streams do not
mix. Under the CUDA simulator there are no streams; an external stream is represented by
a :class:`SimStream` holding its handle (tests check launches carry it).
"""
import threading

try:  # numba-cuda >= 0.2x keeps its own config
    from numba.cuda.core import config as _cuda_config
except ImportError:  # pragma: no cover - older numba-cuda
    from numba.core import config as _cuda_config

SIMULATOR = bool(_cuda_config.ENABLE_CUDASIM)

#: cached stream objects / scratch buffers kept per thread
_KEEP_STREAMS = 64
_KEEP_SCRATCH = 16


class SimStream:
    """Simulator stand-in for ``numba.cuda.external_stream(handle)`` (no streams there)."""

    __slots__ = ("handle",)

    def __init__(self, handle):
        self.handle = handle

    def __repr__(self):
        return f"SimStream({self.handle:#x})"


class _State(threading.local):
    stream = 0
    key = 0
    alloc = None

    def __init__(self):
        self.scratch = {}


_state = _State()
_streams = {}


def stream():
    """The stream of the current call (0: the legacy default stream)."""
    return _state.stream


def key():
    """Hashable id of :func:`stream` (0 for the legacy default stream)."""
    return _state.key


def allocator():
    """None (Numba's allocator) or the caller's library's ``empty(shape, dtype)``."""
    return _state.alloc


def _external(handle):
    """Numba stream object for a CAI v3 stream value (None/1: legacy default, 2: per-thread
    default, else a ``cudaStream_t``)."""
    if handle is None or handle == 1 or handle == 0:
        return 0
    s = _streams.get(handle)
    if s is None:
        from numba import cuda

        if SIMULATOR:
            s = SimStream(handle)
        elif handle == 2:
            s = cuda.per_thread_default_stream()
        else:
            s = cuda.external_stream(handle)
        if len(_streams) >= _KEEP_STREAMS:
            _streams.pop(next(iter(_streams)))
        _streams[handle] = s
    return s


def _stream_of(x):
    """(stream, key) the data ``x`` lives on."""
    own = getattr(x, "stream", None)
    if own is not None and hasattr(x, "copy_to_host"):  # a Numba device array
        if not own:
            return 0, 0
        try:
            return own, int(own)
        except TypeError:  # a stream object without a handle value
            return own, id(own)
    try:
        handle = x.__cuda_array_interface__.get("stream")
    except Exception:  # not a CAI object (DLPack-only memory is imported through CuPy later)
        return 0, 0
    s = _external(handle)
    return s, (0 if s == 0 else int(handle))


def _cupy_alloc(shape, dtype):
    import cupy

    return cupy.empty(shape, dtype)


_torch_dtypes = {}


def _torch_alloc(device):
    import numpy as np
    import torch

    def alloc(shape, dtype):
        dt = _torch_dtypes.get(dtype)
        if dt is None:
            dt = _torch_dtypes[dtype] = torch.from_numpy(np.empty(0, dtype)).dtype
        return torch.empty(tuple(shape), dtype=dt, device=device)

    return alloc


def begin(kind, x):
    """Start a GPU call whose data is ``x`` (a GPU array of library ``kind``; None: a host
    call forced onto the GPU): pick its stream and allocator."""
    st = _state
    if x is None:
        st.stream, st.key, st.alloc = 0, 0, None
        return
    st.stream, st.key = _stream_of(x)
    if kind == "cupy":
        st.alloc = _cupy_alloc
    elif kind == "torch" and getattr(getattr(x, "device", None), "type", None) == "cuda":
        # PyTorch's interface is v2 (no stream): ask for its current stream
        import torch

        handle = torch.cuda.current_stream(x.device).cuda_stream
        st.stream = _external(handle)
        st.key = 0 if st.stream == 0 else int(handle)
        st.alloc = _torch_alloc(x.device)
    else:
        st.alloc = None


def scratch(tag, shape, dtype, make):
    """A cached buffer of ``shape``/``dtype`` for this thread and stream (module doc)."""
    k = (tag, tuple(shape), str(dtype), _state.key)
    cache = _state.scratch
    buf = cache.pop(k, None)
    if buf is None:
        buf = make(shape, dtype)
    cache[k] = buf  # most recently used last
    while len(cache) > _KEEP_SCRATCH:
        cache.pop(next(iter(cache)))
    return buf
