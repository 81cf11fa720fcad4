from hypothesis import given
from hypothesis import strategies as st

from espnet2.data.frames import FrameGeometry, compose, num_frames_per_layer

W2V = [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2


def test_wav2vec_geometry():
    g = compose(W2V)
    assert (g.receptive_field, g.stride, g.pad) == (400, 320, 0)
    assert g.num_frames(16000) == 49
    assert g.num_frames(399) == 0 and g.num_frames(400) == 1


@given(st.integers(0, 200_000))
def test_compose_equals_layerwise(n):
    assert compose(W2V).num_frames(n) == num_frames_per_layer(n, W2V)


@given(st.integers(1, 50), st.integers(1, 20), st.integers(0, 10), st.integers(1, 10_000))
def test_inverse(rf, stride, pad, frames):
    g = FrameGeometry(rf, stride, pad)
    n = g.num_samples_for(frames)
    if n >= 0:
        assert g.num_frames(n) == frames
        assert n == 0 or g.num_frames(n - 1) == frames - 1
