"""CUDA kernels (``@cuda.jit``, compiled lazily on first launch).

Each ``<op>.py`` mirrors ``numbanorm/_cpu/<op>.py``: launchers with the same names and
signatures as the CPU entry points, taking Numba device arrays. Imported only when a
GPU array (or ``force_device("cuda")``) reaches a public function.
"""
