"""Why normalization matters, measured: a NumPy network trained with numbanorm's layers.

Everything here is plain NumPy (matrix products, ReLU/tanh, softmax cross-entropy, SGD) except
the normalizations and their backward passes, which come from numbanorm: the layer classes
``BatchNorm1d``, ``LayerNorm``, ``GroupNorm`` (forward caches statistics, ``backward`` returns
``grad_x`` and stores the parameter gradients) and the functions ``weight_standardize`` /
``weight_standardize_backward``, ``layer_norm`` / ``layer_norm_backward``.

Part 1, an MLP 64-64-64-64-10 (ReLU, He initialization, plain SGD, float32) on
scikit-learn's bundled 8x8 digits (a generated look-alike when scikit-learn is absent):

* ``high_lr``     a learning rate at which the un-normalized network diverges while the
                  normalized ones train;
* ``speed``       at a learning rate where every variant is stable, the normalized networks
                  lower the loss faster;
* ``small_batch`` batch size 2 (and 1): BatchNorm's batch statistics become noise and its
                  running statistics no longer match them, so its test accuracy drops, while
                  GroupNorm with weight standardization (statistics per sample) keeps its
                  accuracy; BatchNorm cannot train at batch size 1 at all.

Part 2, a recurrent cell ``h_t = tanh(g / sigma_t * (a_t - mu_t) + b)`` with
``a_t = W_x x_t + W_h h_{t-1}`` (layer normalization of the summed inputs, Ba et al. 2016)
against the plain cell ``h_t = tanh(a_t + b)``, trained with Adam by back-propagation through
time (``layer_norm_backward`` at every step) on batches of variable-length sequences (5..20
steps) of two tasks, the sign of a running sum of +-1 inputs and the running parity of 0/1
inputs, and evaluated on sequences of 60 and 200 steps (1000 in the full run). What it
shows: the layer-normalized cell keeps the statistics of what enters tanh stationary along
sequences far longer than any seen in training (the plain cell's summed inputs grow over the
first tens of steps, past the training lengths for parity) and keeps far fewer units
saturated (|h| > 0.99, where gradients vanish). Measured honestly, not a claim: on these two
small tasks the accuracy beyond the training length is NOT consistently better with layer
normalization -- it depends on the seed and on the training length, and after the full run's
1500 steps both cells are equal (see the table).

Claims checked by ``check_claims`` (and by ``tests/test_examples.py`` on ``--quick``, seed 0;
they also hold for seeds 0..5 in ``--quick``): at learning rate 1.0 the plain network's loss
blows up and ends at chance while BatchNorm and GroupNorm+WS train (LayerNorm survives too
but is fragile there: reported, not asserted); at 0.1 every normalized network has a lower
loss after the first epoch and at the end; at batch size 2 GroupNorm+WS beats BatchNorm on
the test set and BatchNorm loses more accuracy than GroupNorm+WS going from 32 to 2; at batch
size 1 GroupNorm+WS trains and BatchNorm refuses; the RNN statements above.

Run ``python examples/train_digits.py [--quick] [--seed N] [--plot FILE.png]``; it prints a
table and, with ``--plot``, saves the loss curves (needs matplotlib). Tests call
:func:`run_experiments` directly.
"""
import argparse
import math
import sys
import time

import numpy as np

try:
    import numbanorm as nb
except ImportError:  # run from a source checkout without installing: use the repository's package
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    import numbanorm as nb

DTYPE = np.float32

# --------------------------------------------------------------------------------------
# data


def load_data(seed=0, test_fraction=0.25, force_synthetic=False):
    """(X_train, y_train, X_test, y_test, source): 64 features in [0, 1], 10 classes.

    scikit-learn's bundled ``load_digits`` (1797 images of 8x8 pixels, no download), or,
    without scikit-learn, 1797 generated 8x8 "digits": a random stroke pattern per class,
    randomly shifted by a pixel, with pixel noise.
    """
    rng = np.random.default_rng(seed)
    X = y = None
    source = "synthetic"
    if not force_synthetic:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            pass
        else:
            d = load_digits()
            X, y = d.data / 16.0, d.target
            source = "sklearn digits"
    if X is None:
        proto_rng = np.random.default_rng(1234)
        protos = (proto_rng.random((10, 8, 8)) < 0.35).astype(float)
        n = 1797
        y = np.arange(n) % 10
        imgs = protos[y]
        shifts = rng.integers(-1, 2, size=(n, 2))
        imgs = np.stack([np.roll(im, tuple(s), axis=(0, 1)) for im, s in zip(imgs, shifts)])
        imgs = imgs * rng.uniform(0.6, 1.0, size=(n, 1, 1)) + rng.normal(0, 0.15, size=imgs.shape)
        X = np.clip(imgs, 0, 1).reshape(n, 64)
    perm = rng.permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    te, tr = perm[:n_test], perm[n_test:]
    return X[tr].astype(DTYPE), y[tr], X[te].astype(DTYPE), y[te], source


# --------------------------------------------------------------------------------------
# the MLP


def softmax_xent(logits, y):
    """Mean cross-entropy and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(np.maximum(p[np.arange(n), y], 1e-30)).mean()
    d = p
    d[np.arange(n), y] -= 1.0
    return float(loss), d / n


class MLP:
    """``in -> [Linear -> Norm -> ReLU] x depth -> Linear``, backward by hand.

    ``norm``: None, "batch", "layer" or "group". With ``ws=True`` the hidden Linear
    weights are standardized per output unit (``numbanorm.weight_standardize``) before
    use, and the gradient goes back through ``weight_standardize_backward``. The hidden
    Linear layers have a bias only without normalization (the norm's bias replaces it).
    Weights: ``init="he"`` (default) N(0, 2/fan_in); ``init="torch"`` PyTorch's default
    ``Linear`` initialization U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """

    def __init__(self, n_in, hidden, n_out, norm=None, groups=8, ws=False, init="he", seed=0, dtype=DTYPE):
        rng = np.random.default_rng(seed)
        self.norm, self.ws = norm, ws
        sizes = [n_in] + list(hidden)
        self.W, self.b, self.norms = [], [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            if init == "he":
                self.W.append(rng.normal(0.0, math.sqrt(2.0 / fan_in), (fan_out, fan_in)).astype(dtype))
            else:
                self.W.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(dtype))
            self.b.append(None if norm else rng.uniform(-bound, bound, fan_out).astype(dtype))
            if norm == "batch":
                self.norms.append(nb.BatchNorm1d(fan_out, dtype=dtype))
            elif norm == "layer":
                self.norms.append(nb.LayerNorm(fan_out, dtype=dtype))
            elif norm == "group":
                self.norms.append(nb.GroupNorm(groups, fan_out, dtype=dtype))
            elif norm is None:
                self.norms.append(None)
            else:
                raise ValueError(f"MLP(): argument 'norm' must be None, 'batch', 'layer' or 'group', got {norm!r}")
        bound = 1.0 / math.sqrt(sizes[-1])
        self.W_out = rng.uniform(-bound, bound, (n_out, sizes[-1])).astype(dtype)
        self.b_out = rng.uniform(-bound, bound, n_out).astype(dtype)

    def train(self, mode=True):
        for layer in self.norms:
            if layer is not None:
                layer.train(mode)
        return self

    def forward(self, X):
        self._cache = []
        h = X
        for W, b, norm in zip(self.W, self.b, self.norms):
            W_used = nb.weight_standardize(W) if self.ws else W
            a = h @ W_used.T
            if b is not None:
                a += b
            z = norm(a) if norm is not None else a
            self._cache.append((h, W_used))
            h = np.maximum(z, 0)
            self._cache[-1] += (h,)
        self._h_last = h
        return h @ self.W_out.T + self.b_out

    def backward(self, dlogits):
        self.grads = {"W_out": dlogits.T @ self._h_last, "b_out": dlogits.sum(axis=0)}
        dh = dlogits @ self.W_out
        for i in reversed(range(len(self.W))):
            h_in, W_used, h_out = self._cache[i]
            dz = dh * (h_out > 0)
            da = self.norms[i].backward(dz) if self.norms[i] is not None else dz
            dW = da.T @ h_in
            if self.ws:
                dW = nb.weight_standardize_backward(dW, self.W[i])
            self.grads[f"W{i}"] = dW
            if self.b[i] is not None:
                self.grads[f"b{i}"] = da.sum(axis=0)
            if i:
                dh = da @ W_used

    def sgd(self, lr):
        self.W_out -= lr * self.grads["W_out"]
        self.b_out -= lr * self.grads["b_out"]
        for i, W in enumerate(self.W):
            W -= lr * self.grads[f"W{i}"]
            if self.b[i] is not None:
                self.b[i] -= lr * self.grads[f"b{i}"]
            norm = self.norms[i]
            if norm is not None:
                for name, p in norm.named_parameters():
                    p -= lr * norm.grads[name]


def train_mlp(data, norm=None, *, lr=0.1, batch_size=32, epochs=3, ws=False, groups=8,
              hidden=(64, 64, 64), init="he", seed=0):
    """Train one MLP with plain SGD; returns its curves and final metrics.

    ``loss_curve``: mean training (mini-batch) loss over each tenth of an epoch;
    ``epoch_loss``: mean mini-batch loss of each epoch. ``nonfinite``: the loss became
    NaN/inf (training stops there). ``max_loss``: the largest mini-batch loss.
    ``blew_up``: non-finite, or a mini-batch loss above 1.25 ln 10 (above the starting
    value, ~ln 10). ``failed``: non-finite, or the last
    epoch ends no better than chance (mean loss >= 0.9 ln 10). ``diverged``: blew up and
    failed. ``test_acc`` is measured after the last step in evaluation mode (BatchNorm:
    running statistics); NaN after a non-finite loss.
    """
    X, y, Xt, yt, _ = data
    net = MLP(X.shape[1], hidden, 10, norm=norm, groups=groups, ws=ws, init=init, seed=seed)
    rng = np.random.default_rng(seed + 1)
    per_epoch = math.ceil(len(y) / batch_size)
    chunk = max(1, per_epoch // 10)
    curve, epoch_loss, window, step_max = [], [], [], []
    nonfinite = False
    t0 = time.perf_counter()
    for _ in range(epochs):
        net.train(True)
        order = rng.permutation(len(y))
        losses = []
        for s in range(per_epoch):
            idx = order[s * batch_size:(s + 1) * batch_size]
            with np.errstate(all="ignore"):
                logits = net.forward(X[idx])
                loss, d = softmax_xent(logits, y[idx])
            if not math.isfinite(loss):
                nonfinite = True
                break
            with np.errstate(all="ignore"):
                net.backward(d)
                net.sgd(lr)
            losses.append(loss)
            step_max.append(loss)
            window.append(loss)
            if len(window) == chunk:
                curve.append(float(np.mean(window)))
                window = []
        if nonfinite:
            curve.append(float("nan"))
            epoch_loss.append(float("nan"))
            break
        epoch_loss.append(float(np.mean(losses)))
    final = epoch_loss[-1]
    max_loss = max(step_max) if step_max else float("nan")
    failed = nonfinite or final >= CHANCE_LOSS
    blew_up = nonfinite or max_loss > BLOW_UP_LOSS
    net.train(False)
    with np.errstate(all="ignore"):
        acc = float((net.forward(Xt).argmax(axis=1) == yt).mean()) if not nonfinite else float("nan")
    return {
        "norm": norm, "ws": ws, "lr": lr, "batch_size": batch_size, "epochs": epochs,
        "steps": per_epoch * epochs, "loss_curve": curve, "epoch_loss": epoch_loss,
        "first_epoch_loss": epoch_loss[0], "final_loss": final, "max_loss": max_loss, "test_acc": acc,
        "nonfinite": nonfinite, "blew_up": blew_up, "failed": failed, "diverged": blew_up and failed,
        "seconds": time.perf_counter() - t0,
    }


CHANCE_LOSS = 0.9 * math.log(10)
BLOW_UP_LOSS = 1.25 * math.log(10)

MLP_VARIANTS = {
    "none": {"norm": None},
    "batch": {"norm": "batch"},
    "layer": {"norm": "layer"},
    "group+ws": {"norm": "group", "ws": True},
}
HIGH_LR = 1.0
BASE_LR = 0.1


def small_batch_lr(batch_size):
    """Learning rate for a batch size: BASE_LR at 32, scaled with sqrt(batch_size / 32)."""
    return BASE_LR * math.sqrt(batch_size / 32)


def mlp_experiments(quick=True, seed=0, data=None):
    """The three MLP experiments (see the module docstring); a dict of results."""
    data = load_data(seed) if data is None else data
    epochs = 3 if quick else 10
    res = {"data": data[4], "n_train": len(data[1]), "n_test": len(data[3])}
    # 1. a learning rate at which the plain network diverges
    res["high_lr"] = {k: train_mlp(data, lr=HIGH_LR, epochs=epochs, seed=seed, **v) for k, v in MLP_VARIANTS.items()}
    # 2. a stable learning rate: speed of the loss decrease
    res["speed"] = {k: train_mlp(data, lr=BASE_LR, epochs=epochs, seed=seed, **v) for k, v in MLP_VARIANTS.items()}
    # 3. tiny batches: BatchNorm against GroupNorm + weight standardization
    small = {}
    tiny_epochs = 1 if quick else 3
    for bs, ep in ((32, epochs), (2, tiny_epochs)):
        small[f"batch bs={bs}"] = train_mlp(data, "batch", lr=small_batch_lr(bs), batch_size=bs, epochs=ep, seed=seed)
        small[f"group+ws bs={bs}"] = train_mlp(data, "group", ws=True, lr=small_batch_lr(bs), batch_size=bs,
                                               epochs=ep, seed=seed)
    small["group+ws bs=1"] = train_mlp(data, "group", ws=True, lr=small_batch_lr(1), batch_size=1,
                                       epochs=tiny_epochs, seed=seed)
    try:
        train_mlp(data, "batch", lr=small_batch_lr(1), batch_size=1, epochs=1, seed=seed)
    except ValueError as e:  # PyTorch's rule: one value per channel cannot be batch-normalized
        res["batch_bs1_error"] = str(e)
    else:  # pragma: no cover - batch_norm refuses a batch of one in training
        res["batch_bs1_error"] = None
    res["small_batch"] = small
    return res


# --------------------------------------------------------------------------------------
# the recurrent cell


class RNN:
    """An Elman RNN, optionally layer-normalized, with a linear read-out at every step.

    Plain:            ``h_t = tanh(W_x x_t + W_h h_{t-1} + b)``
    Layer-normalized: ``h_t = tanh(g / sigma_t * (a_t - mu_t) + b)``, ``a_t = W_x x_t + W_h h_{t-1}``
    with ``mu_t, sigma_t`` the mean and standard deviation of ``a_t`` over the hidden units
    (``numbanorm.layer_norm``; ``g`` and ``b`` are its weight and bias). Output
    ``o_t = W_o h_t + c``. Back-propagation through time by hand, with
    ``numbanorm.layer_norm_backward`` at every step (using the saved mean/rstd).
    """

    def __init__(self, n_in, n_hidden, n_out, layer_norm=False, seed=0, dtype=DTYPE):
        rng = np.random.default_rng(seed)
        self.layer_norm = layer_norm
        q, _ = np.linalg.qr(rng.normal(size=(n_hidden, n_hidden)))
        self.params = {
            "Wx": rng.normal(0.0, 1.0 / math.sqrt(n_in), (n_hidden, n_in)),
            "Wh": q,
            "b": np.zeros(n_hidden),
            "Wo": rng.normal(0.0, 1.0 / math.sqrt(n_hidden), (n_out, n_hidden)),
            "c": np.zeros(n_out),
        }
        if layer_norm:
            self.params["g"] = np.ones(n_hidden)
        self.params = {k: v.astype(dtype) for k, v in self.params.items()}
        self.n_hidden = n_hidden

    def forward(self, X):
        """X: (T, B, n_in) -> outputs (T, B, n_out)."""
        p = self.params
        T, B, _ = X.shape
        h = np.zeros((B, self.n_hidden), p["Wh"].dtype)
        self._X, self._hs, self._cache = X, [h], []
        self.z_rms, self.saturation = [], []
        for t in range(T):
            a = X[t] @ p["Wx"].T + h @ p["Wh"].T
            if self.layer_norm:
                z, mean, rstd = nb.layer_norm(a, self.n_hidden, p["g"], p["b"], return_stats=True)
                self._cache.append((a, mean, rstd))
            else:
                z = a + p["b"]
            h = np.tanh(z)
            self._hs.append(h)
            # the statistics of what enters tanh, per step: root mean square, and the
            # fraction of saturated units (|h| > 0.99, where tanh' < 0.02)
            self.z_rms.append(float(np.sqrt(np.mean(z * z))))
            self.saturation.append(float(np.mean(np.abs(h) > 0.99)))
        self._H = np.stack(self._hs[1:])
        return self._H @ p["Wo"].T + p["c"]

    def backward(self, dO):
        """dO: gradient of the loss w.r.t. the outputs; fills ``self.grads``."""
        p = self.params
        g = {k: np.zeros_like(v) for k, v in p.items()}
        g["Wo"] = np.einsum("tbo,tbh->oh", dO, self._H)
        g["c"] = dO.sum(axis=(0, 1))
        dH = dO @ p["Wo"]
        dh = np.zeros_like(self._hs[0])
        for t in reversed(range(len(self._hs) - 1)):
            h = self._hs[t + 1]
            dz = (dh + dH[t]) * (1.0 - h * h)
            if self.layer_norm:
                a, mean, rstd = self._cache[t]
                da, dg, db = nb.layer_norm_backward(dz, a, self.n_hidden, p["g"], mean=mean, rstd=rstd)
                g["g"] += dg
                g["b"] += db
            else:
                da = dz
                g["b"] += dz.sum(axis=0)
            g["Wx"] += da.T @ self._X[t]
            g["Wh"] += da.T @ self._hs[t]
            dh = da @ p["Wh"]
        self.grads = g


class Adam:
    """Adam with global gradient-norm clipping, updating a dict of arrays in place."""

    def __init__(self, params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, clip=1.0):
        self.params, self.lr, self.betas, self.eps, self.clip = params, lr, betas, eps, clip
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads):
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        scale = min(1.0, self.clip / (norm + 1e-12)) if self.clip else 1.0
        self.t += 1
        b1, b2 = self.betas
        for k, p in self.params.items():
            gk = grads[k] * scale
            self.m[k] = b1 * self.m[k] + (1 - b1) * gk
            self.v[k] = b2 * self.v[k] + (1 - b2) * gk * gk
            mhat = self.m[k] / (1 - b1 ** self.t)
            vhat = self.v[k] / (1 - b2 ** self.t)
            p -= (self.lr * mhat / (np.sqrt(vhat) + self.eps)).astype(p.dtype)


def make_sequences(task, lengths, rng):
    """A padded batch of sequences with one target per step.

    ``task="sign"``: inputs +-1; target: is the running sum so far > 0 (steps where it is
    0 are not scored). ``task="parity"``: inputs 0/1; target: is the running count of ones
    odd. ``lengths``: one length per sequence. Returns ``x (T, B, 1)``, ``y (T, B)`` and a
    boolean ``mask (T, B)`` of the scored steps (False after a sequence's end).
    """
    lengths = np.asarray(lengths)
    T, B = int(lengths.max()), len(lengths)
    valid = np.arange(T)[:, None] < lengths[None, :]
    if task == "sign":
        x = rng.choice(np.array([-1.0, 1.0]), size=(T, B))
        c = np.cumsum(x, axis=0)
        y = (c > 0).astype(np.int64)
        mask = valid & (c != 0)
    elif task == "parity":
        x = (rng.random((T, B)) < 0.5).astype(float)
        y = (np.cumsum(x, axis=0) % 2).astype(np.int64)
        mask = valid
    else:
        raise ValueError(f"make_sequences(): argument 'task' must be 'sign' or 'parity', got {task!r}")
    return x[..., None].astype(DTYPE), y, mask


def masked_xent(O, y, mask):
    """Mean cross-entropy over the scored steps, its gradient, and per-step correctness."""
    z = O - O.max(axis=-1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=-1, keepdims=True)
    n = max(int(mask.sum()), 1)
    py = np.take_along_axis(p, y[..., None], axis=-1)[..., 0]
    loss = float((-np.log(np.maximum(py, 1e-30)) * mask).sum() / n)
    d = p.copy()
    np.put_along_axis(d, y[..., None], (py - 1.0)[..., None], axis=-1)
    correct = p.argmax(axis=-1) == y
    return loss, d * (mask[..., None] / n), correct


def train_rnn(task, layer_norm, *, steps=300, hidden=32, batch=32, train_lengths=(5, 20),
              eval_lengths=(20, 60, 200), lr=1e-2, seed=0):
    """Train a (layer-normalized) RNN with Adam on variable-length sequences; evaluate longer.

    Each training batch holds sequences of random lengths in ``train_lengths``. ``acc``:
    accuracy per evaluation length over the steps beyond the longest training length
    (over all steps for lengths within it). ``z_drift``: |log| of the ratio of the
    root-mean-square tanh input over the last 50 steps of the longest evaluation
    sequences to that over the first ``train_lengths[1]`` steps; ``saturation``: fraction
    of saturated units (|h| > 0.99) on those sequences.
    """
    rng = np.random.default_rng(seed)
    net = RNN(1, hidden, 2, layer_norm=layer_norm, seed=seed)
    opt = Adam(net.params, lr=lr)
    lo, hi = train_lengths
    curve, window = [], []
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y, mask = make_sequences(task, rng.integers(lo, hi + 1, size=batch), rng)
        with np.errstate(all="ignore"):
            O = net.forward(x)
            loss, d, _ = masked_xent(O, y, mask)
            net.backward(d)
            opt.step(net.grads)
        window.append(loss)
        if len(window) == 10:
            curve.append(float(np.mean(window)))
            window = []
    erng = np.random.default_rng(10_000 + seed)
    acc = {}
    for L in eval_lengths:
        x, y, mask = make_sequences(task, np.full(256, L), erng)
        with np.errstate(all="ignore"):
            _, _, correct = masked_xent(net.forward(x), y, mask)
        scored = mask.copy()
        if L > hi:
            scored[:hi] = False
        acc[L] = float(correct[scored].mean())
    z = np.asarray(net.z_rms)  # from the last (longest) evaluation batch
    drift = abs(math.log(z[-50:].mean() / z[:hi].mean()))
    return {
        "task": task, "layer_norm": layer_norm, "steps": steps, "loss_curve": curve,
        "final_loss": float(np.mean(curve[-3:])), "acc": acc, "z_drift": drift,
        "z_rms_curve": z.tolist(), "saturation": float(np.mean(net.saturation)),
        "train_lengths": train_lengths, "seconds": time.perf_counter() - t0,
    }


def rnn_experiments(quick=True, seed=0):
    """Plain and layer-normalized RNN on the running-sum sign and the parity tasks."""
    steps = 300 if quick else 1500
    lengths = (20, 60, 200) if quick else (20, 60, 200, 1000)
    return {
        task: {
            cell: train_rnn(task, cell == "layer_norm", steps=steps, eval_lengths=lengths, seed=seed)
            for cell in ("plain", "layer_norm")
        }
        for task in ("sign", "parity")
    }


def run_experiments(quick=True, seed=0):
    """Every experiment of the example; a dict with the results (see ``format_table``)."""
    t0 = time.perf_counter()
    res = mlp_experiments(quick, seed)
    res["rnn"] = rnn_experiments(quick, seed)
    res["claims"] = check_claims(res)
    res["seconds"] = time.perf_counter() - t0
    return res


def _loss(r):
    """A loss for comparisons: NaN (diverged) counts as infinitely bad."""
    return float("inf") if not math.isfinite(r) else r


def check_claims(res):
    """The claims of the module docstring, evaluated on the measured results."""
    hi, sp, sb = res["high_lr"], res["speed"], res["small_batch"]
    norms = ("batch", "layer", "group+ws")
    claims = {
        "high lr: the un-normalized network diverges": hi["none"]["diverged"],
        "high lr: BatchNorm and GroupNorm+WS train": not hi["batch"]["failed"] and not hi["group+ws"]["failed"],
        "high lr: BatchNorm and GroupNorm+WS end below the un-normalized network": all(
            _loss(hi[k]["final_loss"]) < _loss(hi["none"]["final_loss"]) for k in ("batch", "group+ws")),
        "speed: every normalized network has a lower first-epoch loss": all(
            sp[k]["first_epoch_loss"] < sp["none"]["first_epoch_loss"] for k in norms),
        "speed: every normalized network has a lower final loss": all(
            sp[k]["final_loss"] < sp["none"]["final_loss"] for k in norms),
        "batch size 2: GroupNorm+WS beats BatchNorm on the test set": (
            sb["group+ws bs=2"]["test_acc"] > sb["batch bs=2"]["test_acc"]),
        "batch size 2: BatchNorm loses more test accuracy than GroupNorm+WS": (
            sb["batch bs=32"]["test_acc"] - sb["batch bs=2"]["test_acc"]
            > sb["group+ws bs=32"]["test_acc"] - sb["group+ws bs=2"]["test_acc"]),
        "batch size 1: GroupNorm+WS trains, BatchNorm refuses": (
            not sb["group+ws bs=1"]["failed"] and res.get("batch_bs1_error") is not None),
    }
    for task, cells in res.get("rnn", {}).items():
        p, ln = cells["plain"], cells["layer_norm"]
        claims[f"rnn {task}: layer norm keeps the tanh input stationary over long sequences"] = (
            ln["z_drift"] < p["z_drift"])
        claims[f"rnn {task}: layer norm keeps fewer units saturated"] = ln["saturation"] < p["saturation"]
    return claims


# --------------------------------------------------------------------------------------
# report


def _fmt(v, digits=3):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _table(header, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def format_table(res):
    """The results as text tables."""
    out = [f"data: {res['data']} ({res['n_train']} train / {res['n_test']} test), "
           f"MLP 64-64-64-64-10, ReLU, He init, plain SGD"]
    head = ["variant", "lr", "batch", "steps", "epoch-1 loss", "max loss", "final loss", "test acc", "status"]
    titles = {"high_lr": f"1. learning rate {HIGH_LR}: does training survive?",
              "speed": f"2. learning rate {BASE_LR}: how fast does the loss fall?",
              "small_batch": "3. tiny batches: BatchNorm vs GroupNorm + weight standardization"}
    for exp in ("high_lr", "speed", "small_batch"):
        rows = []
        for k, r in res[exp].items():
            status = "NaN" if r["nonfinite"] else "diverged" if r["diverged"] else "failed" if r["failed"] else "ok"
            rows.append([k, _fmt(r["lr"]), r["batch_size"], r["steps"], _fmt(r["first_epoch_loss"]),
                         _fmt(r["max_loss"]), _fmt(r["final_loss"]), _fmt(r["test_acc"]), status])
        out += ["", titles[exp], _table(head, rows)]
    if res.get("batch_bs1_error"):
        out.append(f"batch bs=1: refused: {res['batch_bs1_error']}")
    out.append("status: diverged = a mini-batch loss rose above 1.25 ln 10 and training ended no better "
               "than chance; failed = ended no better than chance (>= 0.9 ln 10)")
    if "rnn" in res:
        rows = []
        lengths = None
        for task, cells in res["rnn"].items():
            for cell, r in cells.items():
                lengths = list(r["acc"])
                rows.append([f"{task} / {cell}", _fmt(r["final_loss"], 4)] + [_fmt(r["acc"][L]) for L in lengths]
                            + [_fmt(r["z_drift"]), _fmt(r["saturation"])])
        hi = next(iter(next(iter(res["rnn"].values())).values()))["train_lengths"]
        out += ["", f"4. recurrent cell, trained on lengths {hi[0]}..{hi[1]}, accuracy beyond step {hi[1]} "
                    "on longer sequences",
                _table(["task / cell", "train loss"] + [f"acc@{L}" for L in lengths]
                       + ["tanh-input drift", "saturated"], rows)]
    if "claims" in res:
        out += ["", "claims:"] + [f"  [{'x' if ok else ' '}] {name}" for name, ok in res["claims"].items()]
    return "\n".join(out)


def plot(res, path):
    """Save the loss curves (and the RNN's tanh-input statistics) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, exp, title in ((axes[0, 0], "high_lr", f"lr={HIGH_LR}"), (axes[0, 1], "speed", f"lr={BASE_LR}"),
                           (axes[1, 0], "small_batch", "tiny batches")):
        for k, r in res[exp].items():
            c = np.asarray(r["loss_curve"], float)
            x = np.arange(1, len(c) + 1) / 10.0
            ax.plot(x, np.where(np.isfinite(c), c, np.nan), label=k)
        ax.axhline(math.log(10), color="grey", lw=0.8, ls=":")
        ax.set_title(f"MLP on digits, {title}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.set_ylim(0, 3.5)
        ax.legend(fontsize=8)
    ax = axes[1, 1]
    for task, cells in res.get("rnn", {}).items():
        for cell, r in cells.items():
            ax.plot(r["z_rms_curve"], label=f"{task} / {cell}")
    hi = 20
    ax.axvline(hi, color="grey", lw=0.8, ls=":")
    ax.set_title("RNN: RMS of the tanh input along a long sequence")
    ax.set_xlabel("time step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer epochs and steps (what the tests run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", metavar="FILE.png", help="save the loss curves (needs matplotlib)")
    args = p.parse_args(argv)
    res = run_experiments(quick=args.quick, seed=args.seed)
    print(format_table(res))
    print(f"\n{res['seconds']:.1f} s")
    if args.plot:
        try:
            plot(res, args.plot)
        except ImportError:
            print("matplotlib is not installed: no plot", file=sys.stderr)
        else:
            print(f"plot saved to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
