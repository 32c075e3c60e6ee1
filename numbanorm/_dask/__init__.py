"""Dask support: every public function on ``dask.array.Array`` inputs, returning lazy arrays.

This package is the Dask device's "kernels": :func:`numbanorm._dispatch.device_of` returns
:data:`numbanorm._dispatch.DASK` for a Dask ``x``; the public function validates its
arguments once (Dask arrays by their metadata; parameters that are Dask arrays stay lazy)
and hands its *compute function* and the validated arguments to
``DASK.build("<builder>", compute, ...)``, which calls that builder in the module of the
same name as ``compute``'s here (``_ops/layer_norm.py`` -> ``_dask/layer_norm.py``; the
fused row norms: ``_dask/_fused.py``). A builder gets the compute function as its first
argument and each block task calls it with the block's device
(:func:`._graph.block_device`: CPU for NumPy blocks, CUDA for CuPy blocks), so blocks run
the kernels only, no check is repeated, and nothing here imports ``numbanorm._ops`` or
climbs back over the layer that called it; shared statistics come from
:mod:`numbanorm._stats_host`. Modules: ``_graph`` (plumbing), ``_stats`` (tree
reductions), ``_columns`` (the scalers' Dask statistics), one per op family as in ``_ops/``.

Two patterns cover every normalization:

* **Per-sample normalizations** (layer_norm, rms_norm, group_norm, instance_norm,
  local_response_norm, normalize, weight_standardize and their backwards; batch_norm in
  eval mode): the axes a normalized group spans must lie in one chunk, so only those axes
  are rechunked to a single chunk (layer_norm: the normalized trailing dims; group_norm:
  channels and spatial dims; instance_norm: the spatial dims; normalize: ``axis``;
  local_response_norm: the windowed axes; weight_standardize: all but the first axis).
  Every other axis keeps its chunks, and each block is normalized by the
  op's compute function (``da.blockwise``), so results are those of the in-memory call, bit
  for bit. Parameters (NumPy or Dask) are aligned to the axes they belong to. Parameter
  gradients (sums over samples) are per-block partial sums added by a Dask tree sum.
* **Batch statistics** (batch_norm in training, standardize, min_max_scale, the scalers'
  ``fit``): each block contributes per-channel partial statistics — (count, mean, M2) or
  (min, max), from the numbanorm kernels — and ``da.reduction`` merges them with a tree
  of Chan et al. pairwise updates in a fixed order; the normalization pass then maps over
  the blocks with those statistics. Results equal the in-memory ones to rounding (1e-12
  relative in float64) on any scheduler, ``dask.distributed`` clusters included.

Decisions where the lazy model and in-place updates meet:

* ``batch_norm(training=True)`` / ``instance_norm(use_input_stats=True)`` **with running
  statistics**: the batch statistics are computed eagerly (one pass over ``x`` with the
  current scheduler) and the running statistics (NumPy arrays) are updated in place right
  away, exactly as the in-memory call does; ``y`` stays lazy and reuses those statistics.
  Without running statistics everything is lazy.
* ``out=``: a Dask ``out`` is made to point at the result's graph (NumPy's ``out=`` idiom
  as Dask implements it for ufuncs); a NumPy ``out`` is filled by computing the result
  (``da.store``), and is returned.
* Arguments are validated eagerly, once, by the public function (the checks of the
  in-memory path, on the Dask arrays' metadata), so a bad call raises at once with the
  in-memory message and changes nothing.
* In the batch-statistics backwards the final elementwise combination
  ``w·r·(dy − mean(dy) − x̂·mean(dy·x̂))`` runs in NumPy inside each block (the per-channel
  sums it needs come from the kernels); everything else runs in numbanorm kernels.
"""
