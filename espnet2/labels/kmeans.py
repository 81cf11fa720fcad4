"""Streaming mini-batch k-means for HuBERT pseudo-labels (memory bounded by a batch).

hubert1 learns ``sklearn.cluster.MiniBatchKMeans(n_clusters=K, init="k-means++",
batch_size=10000, max_iter=100, n_init=20, reassignment_ratio=0, tol=0)`` on the features of
``ceil(N * portion)`` training utterances loaded in RAM (portion 0.1 for LibriSpeech; ESPnet
#5613 notes that this does not scale). Here the features arrive as a stream of ``(T, D)``
arrays and are never all held at once:

1. pass 0 draws a uniform sample of ``init_size`` frames (priority sampling, seeded) and runs
   greedy k-means++ on it ``n_init`` times, keeping the lowest-inertia start;
2. passes 1..``max_passes`` feed shuffled mini-batches of ``batch_size`` frames to Sculley's
   update ``c_k += (sum_{x in k} x - n_k c_k) / N_k`` (``N_k`` = frames assigned to ``k`` so
   far, the learning rate sklearn uses); a pass whose mean distortion improves by less than
   ``tol`` (relative) stops the fit. Batches are drawn from a shuffle buffer of
   ``shuffle_frames`` frames, or from an in-RAM cache when the stream has at most
   ``cache_frames`` frames (then later passes need not recompute the features).

Backends (chosen by measurement, see ``bench/results/kmeans.md``): ``torch`` (this update,
CPU or GPU), ``sklearn`` (``MiniBatchKMeans.partial_fit`` on the same batches and init) and
``faiss`` (``faiss.Kmeans`` Lloyd on the pass-0 sample; optional dependency).
Everything is deterministic for a given ``seed`` and input order.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from espnet2.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "sklearn", "faiss")


@dataclass
class KMeansModel:
    """Centroids ``(K, D)`` float32 and metadata (K, feature type, dims, seed, ...)."""

    centroids: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def predict(self, feats: np.ndarray | torch.Tensor, device: str | None = None) -> np.ndarray:
        """Nearest centroid per frame: ``(T, D) -> (T,)`` int64."""
        return nearest_centroid(
            torch.as_tensor(feats), torch.as_tensor(self.centroids), device=device
        ).numpy()


def nearest_centroid(
    x: torch.Tensor,
    centroids: torch.Tensor,
    chunk: int = 65536,
    device: str | None = None,
    return_dist: bool = False,
):
    """argmin_k ||x - c_k||^2 for ``x (T, D)``, ``centroids (K, D)`` -> ``(T,)`` long on CPU.

    Computed as ``||x||^2 - 2 x.c + ||c||^2`` in float32 chunks of ``chunk`` frames; with
    ``return_dist`` also the ``(T,)`` squared distances (clamped at 0).
    """
    dev = torch.device(device) if device else centroids.device
    c = centroids.to(dev, torch.float32)
    c2 = (c * c).sum(1)
    labels, dists = [], []
    for start in range(0, x.shape[0], chunk):
        xb = x[start : start + chunk].to(dev, torch.float32)
        d = torch.addmm(c2.unsqueeze(0), xb, c.T, alpha=-2.0)  # (T, K) = ||c||^2 - 2 x.c
        best, idx = d.min(1)
        labels.append(idx.cpu())
        if return_dist:  # + ||x||^2 (constant per row, not needed for the argmin)
            dists.append((best + (xb * xb).sum(1)).clamp_min(0).cpu())
    lab = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    if return_dist:
        return lab, (torch.cat(dists) if dists else torch.zeros(0))
    return lab


def kmeans_plusplus(
    x: torch.Tensor, k: int, gen: torch.Generator, n_trials: int | None = None
) -> torch.Tensor:
    """Greedy k-means++ (``2 + log k`` candidates per step, as sklearn): ``(N, D) -> (k, D)``."""
    n = x.shape[0]
    if n < k:
        raise ValueError(
            f"k-means++ needs at least n_clusters={k} frames, got {n}: "
            "use more data or fewer clusters"
        )
    n_trials = n_trials or 2 + int(math.log(k))
    centers = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    first = int(torch.randint(n, (1,), generator=gen))
    centers[0] = x[first]
    closest = ((x - centers[0]) ** 2).sum(1)
    for i in range(1, k):
        total = float(closest.sum())
        if total <= 0:  # fewer distinct points than k: fill with random points
            cand = torch.randint(n, (1,), generator=gen)
        else:
            probs = (closest / total).cpu().double()
            cand = torch.multinomial(probs, n_trials, replacement=True, generator=gen)
        d = torch.cdist(x[cand.to(x.device)], x).pow(2)  # (trials, N)
        new_closest = torch.minimum(closest.unsqueeze(0), d)
        best = int(new_closest.sum(1).argmin())
        centers[i] = x[cand[best]]
        closest = new_closest[best]
    return centers


def _priority_sample(
    stream: Iterable[np.ndarray], size: int, gen: np.random.Generator, cache_frames: int
):
    """Uniform sample of ``size`` frames (smallest random keys); also returns all frames if
    they fit in ``cache_frames`` (else None). Memory: about ``2 * size`` frames + the cache."""
    keys: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    cache: list[np.ndarray] | None = []
    n_total, n_held = 0, 0
    for feats in stream:
        feats = np.asarray(feats, dtype=np.float32)
        n_total += len(feats)
        if cache is not None:
            cache.append(feats)
            if n_total > cache_frames:
                cache = None
        keys.append(gen.random(len(feats)))
        rows.append(feats)
        n_held += len(feats)
        if n_held > 2 * size:
            keys, rows, n_held = _prune(keys, rows, size)
    if not rows:
        raise ValueError("k-means got no features (empty training set or all utterances too short)")
    keys, rows, _ = _prune(keys, rows, size)
    order = np.argsort(keys[0], kind="stable")  # a deterministic row order
    return rows[0][order], n_total, (np.concatenate(cache) if cache else None)


def _prune(keys: list[np.ndarray], rows: list[np.ndarray], size: int):
    k, r = np.concatenate(keys), np.concatenate(rows)
    if len(k) > size:
        keep = np.argpartition(k, size)[:size]
        k, r = k[keep], r[keep]
    return [k], [r], len(k)


def _batches(
    stream: Iterable[np.ndarray], batch_size: int, buffer_frames: int, gen: np.random.Generator
) -> Iterator[np.ndarray]:
    """Shuffled ``(batch_size, D)`` batches through a buffer of ``buffer_frames`` frames."""
    buf: list[np.ndarray] = []
    n = 0

    def flush(final: bool) -> Iterator[np.ndarray]:
        data = np.concatenate(buf)
        data = data[gen.permutation(len(data))]
        stop = len(data) if final else len(data) - len(data) % batch_size
        for s in range(0, stop, batch_size):
            yield data[s : s + batch_size]
        buf.clear()
        if stop < len(data):
            buf.append(data[stop:])

    for feats in stream:
        buf.append(np.asarray(feats, dtype=np.float32))
        n += len(feats)
        if n >= buffer_frames:
            yield from flush(False)
            n = sum(len(b) for b in buf)
    if n:
        yield from flush(True)


def fit_kmeans(
    make_stream: Callable[[], Iterable[np.ndarray]],
    n_clusters: int,
    seed: int = 0,
    batch_size: int = 10000,
    max_passes: int = 20,
    tol: float = 1e-4,
    init_size: int | None = None,
    n_init: int = 3,
    backend: str = "torch",
    device: str | None = None,
    cache_frames: int = 1_000_000,
    shuffle_frames: int | None = None,
    meta: dict | None = None,
) -> KMeansModel:
    """Fit k-means on a re-iterable stream of ``(T, D)`` feature arrays.

    Args:
        make_stream: returns a fresh iterator over the training features each call
            (called once per pass unless the data fit in ``cache_frames``).
        n_clusters: K (hubert1 ``n_clusters``: 100 for MFCC, 500 for HuBERT features).
        batch_size: frames per mini-batch (hubert1 10000).
        max_passes: passes over the data after initialisation (hubert1 ``max_iter`` 100).
        tol: stop when a pass lowers the mean distortion by less than this fraction.
        init_size: frames sampled for k-means++ (default ``max(3 * batch_size, 3 * K)``).
        n_init: k-means++ restarts on the sample, lowest inertia kept (hubert1 20).
        backend: ``torch`` | ``sklearn`` | ``faiss``.
        device: torch device for init and the ``torch`` backend (default cuda if available).
        cache_frames: keep the features in RAM after pass 0 when the stream has at most this
            many frames (156 MB for 10^6 39-dim frames); 0 disables.
        shuffle_frames: shuffle buffer size when not cached (default ``10 * batch_size``).
        meta: extra metadata stored with the model (feature type, layer, portion, ...).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown k-means backend {backend!r}; choose one of {BACKENDS}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    init_size = init_size or max(3 * batch_size, 3 * n_clusters)
    sample, n_total, cache = _priority_sample(make_stream(), init_size, rng, cache_frames)
    if cache is not None:
        cache = cache[rng.permutation(len(cache))]  # shuffled once (a copy: faster than in place)
    logger.info(
        "k-means: %d frames (dim %d), init sample %d, cached=%s",
        n_total,
        sample.shape[1],
        len(sample),
        cache is not None,
    )
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    xs = torch.from_numpy(sample).to(dev)
    best = None
    for _ in range(n_init):
        c = kmeans_plusplus(xs, n_clusters, gen)
        inertia = float(nearest_centroid(xs, c, return_dist=True)[1].sum())
        if best is None or inertia < best[0]:
            best = (inertia, c)
    centroids = best[1]

    def stream_batches() -> Iterator[np.ndarray]:
        if cache is not None:
            # cache rows were shuffled once; each pass visits the batches in a new order
            starts = rng.permutation(np.arange(0, len(cache), batch_size))
            return (cache[s : s + batch_size] for s in starts)
        return _batches(make_stream(), batch_size, shuffle_frames or 10 * batch_size, rng)

    if backend == "faiss":
        centroids, passes, history = (
            _fit_faiss(sample, centroids.cpu().numpy(), seed, max_passes),
            max_passes,
            [],
        )
    elif backend == "sklearn":
        centroids, passes, history = _fit_sklearn(
            centroids.cpu().numpy(), stream_batches, batch_size, seed, max_passes, tol
        )
    else:
        centroids, passes, history = _fit_torch(centroids, stream_batches, max_passes, tol)
    info = dict(
        n_clusters=n_clusters,
        dim=int(sample.shape[1]),
        seed=seed,
        backend=backend,
        batch_size=batch_size,
        n_frames=int(n_total),
        passes=passes,
        mean_distortion_per_pass=history,
        fit_seconds=round(time.perf_counter() - t0, 3),
    )
    info.update(meta or {})
    logger.info(
        "k-means done: %s", {k: v for k, v in info.items() if k != "mean_distortion_per_pass"}
    )
    return KMeansModel(np.ascontiguousarray(centroids, dtype=np.float32), info)


def _fit_torch(centroids: torch.Tensor, stream_batches, max_passes: int, tol: float):
    c = centroids.clone()
    counts = torch.zeros(c.shape[0], dtype=torch.float64, device=c.device)
    history: list[float] = []
    for p in range(1, max_passes + 1):
        total, n = 0.0, 0
        for batch in stream_batches():
            xb = torch.from_numpy(batch).to(c.device)
            lab, dist = nearest_centroid(xb, c, return_dist=True)
            lab = lab.to(c.device)
            total += float(dist.sum())
            n += len(batch)
            nb = torch.bincount(lab, minlength=c.shape[0]).to(torch.float64)
            sums = torch.zeros_like(c).index_add_(0, lab, xb)
            counts += nb
            hit = nb > 0
            lr = (1.0 / counts[hit]).to(c.dtype).unsqueeze(1)  # Sculley: eta_k = 1 / N_k
            c[hit] += lr * (sums[hit] - nb[hit].to(c.dtype).unsqueeze(1) * c[hit])
        history.append(total / max(n, 1))
        logger.info("k-means pass %d: mean distortion %.4f", p, history[-1])
        if len(history) > 1 and history[-2] - history[-1] < tol * history[-2]:
            break
    return c.cpu().numpy(), len(history), history


def _fit_sklearn(
    init: np.ndarray, stream_batches, batch_size: int, seed: int, max_passes: int, tol: float
):
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(
        n_clusters=init.shape[0],
        init=init,
        n_init=1,
        batch_size=batch_size,
        random_state=seed,
        reassignment_ratio=0.0,
        compute_labels=False,
    )
    history: list[float] = []
    for _ in range(max_passes):
        total, n = 0.0, 0
        for batch in stream_batches():
            if tol > 0 and hasattr(km, "cluster_centers_"):  # an extra assignment per batch
                total += float(-km.score(batch))
            n += len(batch)
            km.partial_fit(batch)
        history.append(total / max(n, 1) if tol > 0 else None)
        if tol > 0 and len(history) > 2 and history[-2] - history[-1] < tol * history[-2]:
            break
    return km.cluster_centers_, len(history), history


def _fit_faiss(sample: np.ndarray, init: np.ndarray, seed: int, niter: int):
    """Lloyd iterations in faiss from the same k-means++ ``init`` (K, D) as the other backends
    (faiss's own random init lands in poor local minima on well-separated data)."""
    try:
        import faiss
    except ImportError as e:  # optional backend
        raise ImportError(
            "k-means backend 'faiss' needs `pip install faiss-cpu` (or faiss-gpu)"
        ) from e
    km = faiss.Kmeans(
        sample.shape[1],
        len(init),
        niter=niter,
        seed=seed,
        verbose=False,
        max_points_per_centroid=len(sample),
    )
    km.train(
        np.ascontiguousarray(sample, dtype=np.float32),
        init_centroids=np.ascontiguousarray(init, dtype=np.float32),
    )
    return km.centroids


def select_portion(utts: list[str], portion: float, seed: int = 0) -> list[str]:
    """``ceil(N * portion)`` utterance ids drawn with ``seed``, in input order.

    hubert1 ``portion_km`` (0.1 for LibriSpeech).
    """
    if not 0 < portion <= 1:
        raise ValueError(f"portion must be in (0, 1], got {portion}")
    n = math.ceil(len(utts) * portion)
    if n >= len(utts):
        return list(utts)
    keep = np.sort(np.random.default_rng(seed).choice(len(utts), n, replace=False))
    return [utts[i] for i in keep]


def model_paths(km_dir: str | Path, n_clusters: int) -> tuple[Path, Path]:
    """``<km_dir>/km_<K>.npy`` (centroids) and ``<km_dir>/km_<K>.json`` (metadata)."""
    km_dir = Path(km_dir)
    return km_dir / f"km_{n_clusters}.npy", km_dir / f"km_{n_clusters}.json"


def save_kmeans(model: KMeansModel, km_dir: str | Path) -> Path:
    """Write centroids (.npy) and metadata (.json) atomically; returns the .npy path."""
    npy, js = model_paths(km_dir, model.n_clusters)
    with atomic_write(npy, "wb") as f:
        np.save(f, model.centroids)
    meta = dict(model.meta, n_clusters=model.n_clusters, dim=model.dim)
    with atomic_write(js) as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    return npy


def load_kmeans(path: str | Path) -> KMeansModel:
    """Load a model from ``km_<K>.npy``, its ``.json``, or a directory holding exactly one."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("km_*.npy"))
        if len(found) != 1:
            raise FileNotFoundError(
                f"{path}: expected exactly one km_<K>.npy, found {[p.name for p in found]}; "
                "pass the file"
            )
        path = found[0]
    npy, js = path.with_suffix(".npy"), path.with_suffix(".json")
    if not npy.is_file():
        raise FileNotFoundError(
            f"k-means centroids {npy} not found; run espnet2.bin.make_pseudo_labels first"
        )
    centroids = np.load(npy).astype(np.float32)
    meta = json.loads(js.read_text()) if js.is_file() else {}
    if meta.get("n_clusters", centroids.shape[0]) != centroids.shape[0]:
        raise ValueError(
            f"{js}: n_clusters={meta['n_clusters']} but {npy} holds {centroids.shape[0]} centroids"
        )
    return KMeansModel(centroids, meta)
