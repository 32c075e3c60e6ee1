"""GPU check of numbanorm (run on a machine with a CUDA GPU; bench/gpu_check.sh calls it).

For each op at the issue-10 shapes: the median time of the numbanorm GPU call on device
arrays (CUDA events around ``reps`` calls, after a warm-up that compiles), the time of a
device-to-device copy of the input (CuPy's ``copyto`` when CuPy is installed, else Numba's
``copy_to_device``: the bandwidth bar, 1 read + 1 write of ``x``), the fraction
``copy / op`` (1.0 = at copy speed), the effective bandwidth, and the ratio to
``torch.nn.functional`` on CUDA when PyTorch with CUDA is installed. Prints a Markdown table.

``python bench/gpu_check.py [--reps N] [--budget SECONDS] [--tiny] [op ...]`` (``--tiny``: small
shapes, a smoke test that also runs in the CUDA simulator, where the times are zeros)
"""
import argparse
import statistics
import sys
import time

import numpy as np


def _events_time(fn, reps):
    from numba import cuda

    fn()
    cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = cuda.event(), cuda.event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(max(start.elapsed_time(stop), 1e-6) * 1e-3)
    return statistics.median(times)


def _last(x):
    """Last dimension (the simulator's device-array shape refuses negative indices)."""
    return tuple(x.shape)[-1]


def _torch():
    try:
        import torch

        return torch if torch.cuda.is_available() else None
    except ImportError:
        return None


def _copy_fn(d):
    try:
        import cupy as cp

        src = cp.asarray(d)
        dst = cp.empty_like(src)
        return lambda: cp.copyto(dst, src)
    except ImportError:
        from numba import cuda

        dst = cuda.device_array_like(d)
        return lambda: dst.copy_to_device(d)


def cases():
    """(label, shape, numbanorm call(dev arrays), torch call(tensors) or None)."""
    import numbanorm

    def ln(shape):
        n = shape[-1]
        return (f"layer_norm{shape}", shape, [n, n],
                lambda x, w, b: numbanorm.layer_norm(x, _last(x), w, b),
                lambda F, x, w, b: F.layer_norm(x, (_last(x),), w, b))

    def ln_b(shape):
        n = shape[-1]
        return (f"layer_norm_backward{shape}", shape, [n, n],
                lambda x, w, b: numbanorm.layer_norm_backward(x, x, _last(x), w), None)

    def rms(shape):
        n = shape[-1]
        return (f"rms_norm{shape}", shape, [n],
                lambda x, w: numbanorm.rms_norm(x, _last(x), w, eps=1e-6),
                lambda F, x, w: F.rms_norm(x, (_last(x),), w, 1e-6))

    def bn(shape, axis=1):
        c = shape[axis]
        tl = None
        if axis == 1:
            tl = lambda F, x, m, v: F.batch_norm(x, m, v, training=True)  # noqa: E731
        return (f"batch_norm{shape}{'' if axis == 1 else ' NHWC'}", shape, [c, c],
                lambda x, m, v: numbanorm.batch_norm(x, m, v, training=True, channel_axis=axis), tl)

    out = [ln((8192, 4096)), ln((32, 768)), ln((4, 65536)), ln((1, 1_000_000)),
           ln_b((8192, 4096)), ln_b((1, 1_000_000)),
           rms((8192, 4096)), rms((1, 1_000_000)),
           bn((32, 64, 56, 56)), bn((32, 56, 56, 64), -1), bn((256, 1024)), bn((32, 224, 224, 3), -1)]
    out += [
        ("group_norm(32)(8,768,14,14)", (8, 768, 14, 14), [],
         lambda x: numbanorm.group_norm(x, min(32, x.shape[1])), lambda F, x: F.group_norm(x, min(32, x.shape[1]))),
        ("group_norm(1)(8,768,14,14)", (8, 768, 14, 14), [],
         lambda x: numbanorm.group_norm(x, 1), lambda F, x: F.group_norm(x, 1)),
        ("instance_norm(32,64,56,56)", (32, 64, 56, 56), [],
         lambda x: numbanorm.instance_norm(x), lambda F, x: F.instance_norm(x)),
        ("lrn across(32,64,56,56)", (32, 64, 56, 56), [],
         lambda x: numbanorm.local_response_norm(x, 5), lambda F, x: F.local_response_norm(x, 5)),
        ("normalize(1M,64) axis0", (1_000_000, 64), [],
         lambda x: numbanorm.normalize(x, axis=0), lambda F, x: F.normalize(x, dim=0)),
        ("normalize(1M,64) axis1", (1_000_000, 64), [],
         lambda x: numbanorm.normalize(x, axis=1), lambda F, x: F.normalize(x, dim=1)),
        ("standardize(1M,64) axis0", (1_000_000, 64), [], lambda x: numbanorm.standardize(x, axis=0), None),
        ("min_max_scale(1M,64) axis0", (1_000_000, 64), [], lambda x: numbanorm.min_max_scale(x, axis=0), None),
    ]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("ops", nargs="*")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--budget", type=float, default=420.0, help="stop starting new cases after this many seconds")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (a smoke test, e.g. in the CUDA simulator)")
    a = ap.parse_args(argv)
    from numba import cuda

    torch = _torch()
    F = torch.nn.functional if torch else None
    t0 = time.time()
    rng = np.random.default_rng(0)
    name = getattr(cuda.get_current_device(), "name", "simulator")
    print(f"# {name.decode() if isinstance(name, bytes) else name}")
    print("| op | numbanorm ms | d2d copy ms | copy/op | GB/s (2x input) | torch ms | torch/op |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, shape, params, fn, tfn in cases():
        if a.ops and not any(label.startswith(o) for o in a.ops):
            continue
        if time.time() - t0 > a.budget:
            print(f"| {label} | (skipped: time budget) | | | | | |")
            continue
        if a.tiny:
            shape = tuple(min(d, 8) for d in shape[:-1]) + (min(shape[-1], 64),)
            axis = 1 if "batch" in label and "NHWC" not in label else -1
            params = [shape[axis]] * len(params)
        x = rng.standard_normal(shape).astype(np.float32)
        ps = [np.ones(p, np.float32) if i == len(params) - 1 and "batch" in label else rng.standard_normal(p).astype(np.float32)
              for i, p in enumerate(params)]
        dx = cuda.to_device(x)
        dps = [cuda.to_device(p) for p in ps]
        try:
            t = _events_time(lambda: fn(dx, *dps), a.reps)
        except Exception as exc:  # report and go on: one broken op must not hide the rest
            print(f"| {label} | FAILED: {type(exc).__name__}: {str(exc)[:80]} | | | | | |")
            continue
        tc = _events_time(_copy_fn(dx), a.reps)
        tt = ""
        ratio = ""
        if F is not None and tfn is not None:
            xt = torch.from_numpy(x).cuda()
            pt = [torch.from_numpy(p).cuda() for p in ps]
            tt_s = _events_time(lambda: tfn(F, xt, *pt), a.reps)
            tt, ratio = f"{tt_s * 1e3:.3f}", f"{tt_s / t:.2f}"
        print(f"| {label} | {t * 1e3:.3f} | {tc * 1e3:.3f} | {tc / t:.2f} | {2 * x.nbytes / t / 1e9:.0f} | {tt} | {ratio} |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
