import numpy as np
import pytest
import soundfile

from espnet2.data.dataset import SSLDataset
from espnet2.data.errors import DataError


@pytest.fixture
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for i, n in enumerate([800, 1200, 1000]):
        x = rng.integers(-3000, 3000, n, dtype=np.int16)
        soundfile.write(tmp_path / f"u{i}.wav", x, 8000, subtype="PCM_16")
        lines.append(f"u{i} {tmp_path}/u{i}.wav\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    # token order deliberately differs from int(label): "b" -> id 0, "3" -> id 1, "a" -> 2
    (tmp_path / "tokens.txt").write_text("b\n3\na\n<unk>\n")
    (tmp_path / "text").write_text("u0 a a b\nu1 3\nu2\n")
    return tmp_path


def test_keys_len_and_item(data_dir):
    ds = SSLDataset(str(data_dir / "wav.scp"), str(data_dir / "text"),
                    ["b", "3", "a", "<unk>"], fs=8000)
    assert list(ds.keys()) == ["u0", "u1", "u2"] and len(ds) == 3
    item = ds["u0"]
    assert item["speech"].dtype == np.float32 and item["speech"].shape == (800,)
    assert item["text"].dtype == np.int64
    np.testing.assert_array_equal(item["text"], [2, 2, 0])
    np.testing.assert_array_equal(ds["u1"]["text"], [1])  # token "3" is id 1, not 3
    assert ds["u2"]["text"].shape == (0,)
    ds.validate_labels()


def test_token_list_path_and_no_text(data_dir):
    ds = SSLDataset(str(data_dir / "wav.scp"), str(data_dir / "text"),
                    str(data_dir / "tokens.txt"))
    np.testing.assert_array_equal(ds["u0"]["text"], [2, 2, 0])
    ds2 = SSLDataset(str(data_dir / "wav.scp"))
    assert set(ds2["u1"]) == {"speech"}


def test_lazy_index_only(data_dir):
    ds = SSLDataset(str(data_dir / "wav.scp"))
    (data_dir / "u1.wav").unlink()  # deleting audio after indexing only breaks access
    assert ds["u0"]["speech"].shape == (800,)
    with pytest.raises(DataError) as ei:
        ds["u1"]
    assert "utt 'u1'" in str(ei.value) and "u1.wav" in str(ei.value)


def test_unknown_label(data_dir):
    (data_dir / "text").write_text("u0 a zz b\nu1 3 7\nu2\n")
    ds = SSLDataset(str(data_dir / "wav.scp"), str(data_dir / "text"), ["b", "3", "a"])
    with pytest.raises(DataError) as ei:
        ds["u0"]
    s = str(ei.value)
    assert "utt 'u0'" in s and "position 1" in s and "'zz'" in s and "token list" in s
    with pytest.raises(DataError) as ei:
        ds.validate_labels()
    assert {(p.utt, p.value) for p in ei.value.problems} == {("u0", "zz"), ("u1", "7")}


def test_text_needs_token_list_and_same_utts(data_dir):
    with pytest.raises(DataError, match="token list"):
        SSLDataset(str(data_dir / "wav.scp"), str(data_dir / "text"))
    (data_dir / "text").write_text("u0 a\nu9 b\n")
    with pytest.raises(DataError) as ei:
        SSLDataset(str(data_dir / "wav.scp"), str(data_dir / "text"), ["a", "b"])
    s = str(ei.value)
    assert "u9" in s and "2 in" in s and "missing" in s


def test_wrong_fs_names_utt(data_dir):
    ds = SSLDataset(str(data_dir / "wav.scp"), fs=16000)
    with pytest.raises(DataError) as ei:
        ds["u2"]
    assert "utt 'u2'" in str(ei.value) and "u2.wav" in str(ei.value)


def test_segments(data_dir):
    (data_dir / "segments").write_text("s0 u1 0.0 0.05\ns1 u1 0.05 0.15\n")
    ds = SSLDataset(str(data_dir / "wav.scp"), segments=str(data_dir / "segments"), fs=8000)
    assert list(ds.keys()) == ["s0", "s1"]
    full = SSLDataset(str(data_dir / "wav.scp"))["u1"]["speech"]
    np.testing.assert_array_equal(ds["s0"]["speech"], full[:400])
    np.testing.assert_array_equal(ds["s1"]["speech"], full[400:1200])
    assert [ds.num_samples(k) for k in ds.keys()] == [400, 800]
    assert SSLDataset(str(data_dir / "wav.scp")).num_samples("u1") == 1200
    (data_dir / "segments").write_text("s0 u1 0.0 0.05\ns1 nope 0 1\n")
    with pytest.raises(DataError) as ei:
        SSLDataset(str(data_dir / "wav.scp"), segments=str(data_dir / "segments"))
    assert "segments:2: utt 's1'" in str(ei.value) and "'nope'" in str(ei.value)


def test_missing_utt_is_keyerror(data_dir):
    ds = SSLDataset(str(data_dir / "wav.scp"))
    with pytest.raises(KeyError, match="nope"):
        ds["nope"]
