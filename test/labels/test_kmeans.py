"""Streaming mini-batch k-means: recovery of known clusters, determinism, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from espnet2.labels.kmeans import (
    KMeansModel,
    fit_kmeans,
    kmeans_plusplus,
    load_kmeans,
    nearest_centroid,
    save_kmeans,
    select_portion,
)


def blobs(k=6, d=5, n=3000, seed=0, spread=20.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * spread
    truth = rng.integers(0, k, n)
    return (centers[truth] + rng.normal(size=(n, d))).astype(np.float32), truth


def stream_of(x, chunk=97):
    return lambda: (x[s : s + chunk] for s in range(0, len(x), chunk))


def purity(pred, truth):
    return sum(np.bincount(truth[pred == c]).max() for c in np.unique(pred)) / len(truth)


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
@pytest.mark.parametrize("cache_frames", [0, 10**6])
def test_recovers_well_separated_gaussians(backend, cache_frames):
    x, truth = blobs()
    model = fit_kmeans(
        stream_of(x),
        6,
        seed=0,
        batch_size=256,
        backend=backend,
        cache_frames=cache_frames,
        shuffle_frames=1000,
    )
    pred = model.predict(x)
    assert purity(pred, truth) == 1.0
    assert purity(truth, pred) == 1.0  # one cluster per Gaussian
    assert model.meta["n_frames"] == len(x) and model.centroids.shape == (6, 5)


def test_same_seed_same_model_and_different_seed_differs():
    x, _ = blobs(k=10, d=4, spread=2.0)  # overlapping: the solution depends on the seed
    a = fit_kmeans(stream_of(x), 10, seed=3, batch_size=200, cache_frames=0, max_passes=3)
    b = fit_kmeans(stream_of(x), 10, seed=3, batch_size=200, cache_frames=0, max_passes=3)
    c = fit_kmeans(stream_of(x), 10, seed=4, batch_size=200, cache_frames=0, max_passes=3)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    assert not np.array_equal(a.centroids, c.centroids)


def test_stream_consumed_lazily_and_passes_bounded():
    x, _ = blobs()
    calls = []

    def make():
        calls.append(1)
        return stream_of(x)()

    model = fit_kmeans(make, 6, seed=0, batch_size=256, cache_frames=0, max_passes=4, tol=0)
    assert len(calls) == 1 + 4 == 1 + model.meta["passes"]
    calls.clear()
    fit_kmeans(make, 6, seed=0, batch_size=256, cache_frames=10**6, max_passes=4, tol=0)
    assert len(calls) == 1  # cached after pass 0


def test_nearest_centroid_matches_bruteforce():
    rng = np.random.default_rng(0)
    x, c = rng.normal(size=(500, 7)).astype(np.float32), rng.normal(size=(9, 7)).astype(np.float32)
    import torch

    lab = nearest_centroid(torch.from_numpy(x), torch.from_numpy(c), chunk=64).numpy()
    np.testing.assert_array_equal(lab, ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1))


def test_kmeans_plusplus_picks_distinct_data_points():
    import torch

    x, _ = blobs(k=4, d=3, n=400)
    c = kmeans_plusplus(torch.from_numpy(x), 4, torch.Generator().manual_seed(0))
    rows = {tuple(r) for r in x.tolist()}
    assert all(tuple(r) in rows for r in c.tolist())
    assert len({tuple(r) for r in c.tolist()}) == 4
    with pytest.raises(ValueError, match="at least n_clusters=5"):
        kmeans_plusplus(torch.from_numpy(x[:4]), 5, torch.Generator())


def test_save_load_roundtrip(tmp_path):
    model = KMeansModel(
        np.arange(12, dtype=np.float32).reshape(4, 3), {"feature": "mfcc", "seed": 1}
    )
    path = save_kmeans(model, tmp_path / "km")
    assert path.name == "km_4.npy"
    meta = json.loads((tmp_path / "km" / "km_4.json").read_text())
    assert meta == {"feature": "mfcc", "seed": 1, "n_clusters": 4, "dim": 3}
    for p in (path, tmp_path / "km", tmp_path / "km" / "km_4.json"):
        loaded = load_kmeans(p)
        np.testing.assert_array_equal(loaded.centroids, model.centroids)
        assert loaded.meta["feature"] == "mfcc"
    assert not list((tmp_path / "km").glob(".*tmp"))
    with pytest.raises(FileNotFoundError, match="make_pseudo_labels"):
        load_kmeans(tmp_path / "nope.npy")


def test_select_portion():
    utts = [f"u{i:03d}" for i in range(95)]
    sub = select_portion(utts, 0.1, seed=0)
    assert len(sub) == 10 and sub == sorted(sub) and set(sub) <= set(utts)
    assert sub == select_portion(utts, 0.1, seed=0) != select_portion(utts, 0.1, seed=1)
    assert select_portion(utts, 1.0) == utts
    with pytest.raises(ValueError):
        select_portion(utts, 0.0)


def test_faiss_backend():  # faiss-cpu is in the test extra (optional at run time)
    x, truth = blobs()
    model = fit_kmeans(stream_of(x), 6, seed=0, batch_size=256, backend="faiss")
    assert model.centroids.shape == (6, 5)
    assert (
        purity(
            nearest_centroid(torch.from_numpy(x), torch.as_tensor(model.centroids)).numpy(), truth
        )
        > 0.99
    )


def test_cuda_fit_matches_cpu():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x, truth = blobs()
    cpu = fit_kmeans(stream_of(x), 6, seed=0, batch_size=256, device="cpu")
    gpu = fit_kmeans(stream_of(x), 6, seed=0, batch_size=256, device="cuda")
    assert purity(gpu.predict(x, device="cuda"), truth) == 1.0
    np.testing.assert_allclose(np.sort(gpu.centroids, 0), np.sort(cpu.centroids, 0), atol=1e-2)
