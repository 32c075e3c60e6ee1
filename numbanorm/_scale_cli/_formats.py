"""One handler per file format of ``numbanorm scale`` (.npy, .npz, .csv): read the input,
scale each array with :func:`._passes._scale_source`, write the result into a temporary file
next to the output and return its path with the fitted statistics (renamed by the caller).
"""
import csv

import numpy as np

from ._common import STATS_VERSION, ScaleError, _one_line, _unlink
from ._files import _ArraySink, _ArraySource, _NpySink, _NpySource, _parse_csv, _tmp_path
from ._passes import _scale_source


def _do_npy(job, inp, out):
    src = _NpySource(inp)
    tmp = _tmp_path(out)
    try:
        sink, stats = _scale_source(job, src, lambda dt: _NpySink(tmp, src, dt), inp)
        del sink
        return tmp, stats
    except BaseException:
        _unlink(tmp)
        raise


def _do_npz(job, inp, out):
    import zipfile

    try:
        with np.load(inp, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, EOFError, KeyError) as e:
        raise ScaleError(f"{inp}: not a valid .npz archive ({_one_line(e)})") from None
    if not arrays:
        raise ScaleError(f"{inp}: the archive holds no arrays")
    loaded_all = job.loaded
    results, stats = {}, {}
    for key, a in arrays.items():
        if loaded_all is not None:
            per = loaded_all.get("arrays", {})
            if key not in per:
                raise ScaleError(f"{inp}: array {key!r} has no saved statistics (saved: {', '.join(per) or 'none'})")
            job.loaded = per[key]
        sink, st = _scale_source(job, _ArraySource(a, f"{inp}[{key}]"), lambda dt: _ArraySink(a.shape, dt),
                                  f"{inp}[{key}]")
        results[key] = sink.a
        if st is not None:
            stats[key] = st
    job.loaded = loaded_all
    tmp = _tmp_path(out)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **results)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp, ({"numbanorm_scale_stats": STATS_VERSION, "method": job.method, "arrays": stats} if stats else None)


def _do_csv(job, inp, out):
    header, table = _parse_csv(inp)
    if job.loaded is not None and header is not None and job.loaded.get("columns") not in (None, header):
        raise ScaleError(
            f"{inp}: columns {header} differ from the columns the statistics were fitted on "
            f"{job.loaded['columns']} (wrong columns)"
        )
    sink, stats = _scale_source(job, _ArraySource(table, inp), lambda dt: _ArraySink(table.shape, dt), inp)
    if stats is not None and header is not None:
        stats["columns"] = header
    tmp = _tmp_path(out)
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            if header is not None:
                w.writerow(header)
            for row in sink.a:
                w.writerow(["" if v != v else repr(float(v)) for v in row])
    except BaseException:
        _unlink(tmp)
        raise
    return tmp, stats
