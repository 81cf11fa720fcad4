"""Import of hubert1 pseudo-labels: token-list mapping, set checks, all problems at once."""

from __future__ import annotations

import pytest

from espnet2.bin.import_hubert1_labels import main as import_main
from espnet2.data.errors import DataError
from espnet2.data.frames import FrameGeometry
from espnet2.data.kaldi import read_token_list
from espnet2.labels.import_hubert1 import find_label_files, import_hubert1_labels

CNN = FrameGeometry(400, 320, 0)
# frequency order, as a tokenizer writes it; "13" would break int(label) < num_classes
TOKENS = "13\n2\n7\n0\n<sos/eos>\\n<unk>\n"  # hubert1's literal "\n" line
LENGTHS = {"train": {"tr1": 16000, "tr2": 8000, "tr3": 4000}, "valid": {"va1": 12000, "va2": 6400}}


@pytest.fixture
def layout(tmp_path):
    """hubert1 outputs (<km_dir>/<set>/pseudo_labels_km4.txt, tokens.txt) + our dump dirs."""
    km, dump = tmp_path / "hubert1" / "exp" / "kmeans_iter0_mfcc", tmp_path / "dump" / "raw"
    labels = ["13", "2", "7", "0"]
    for name, lengths in LENGTHS.items():
        (km / name).mkdir(parents=True)
        (dump / name).mkdir(parents=True)
        lines = [
            " ".join([u, *(labels[i % 4] for i in range(CNN.num_frames(n)))])
            for u, n in lengths.items()
        ]
        (km / name / "pseudo_labels_km4.txt").write_text("\n".join(lines) + "\n")
        (dump / name / "utt2num_samples").write_text(
            "".join(f"{u} {n}\n" for u, n in lengths.items())
        )
        (dump / name / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in lengths))
    (tmp_path / "hubert1" / "tokens.txt").write_text(TOKENS)
    return tmp_path, km, dump


def test_import_maps_through_token_list(layout):
    root, km, dump = layout
    files = find_label_files(km, ["train", "valid"])
    assert files == {s: km / s / "pseudo_labels_km4.txt" for s in ("train", "valid")}
    out = root / "data" / "tokens.txt"
    summary = import_hubert1_labels(
        files, root / "hubert1" / "tokens.txt", dump, out, "wav2vec_cnn", num_classes=4
    )
    assert out.read_text() == "13\n2\n7\n0\n<sos/eos>\n<unk>\n"
    assert read_token_list(out) == ["13", "2", "7", "0", "<sos/eos>", "<unk>"]
    for name in ("train", "valid"):
        assert (dump / name / "text").read_text() == files[name].read_text()
        assert summary[name]["max_id"] == 3 and summary[name]["clusters_used"] == 4
    assert summary["train"]["frames"] == sum(CNN.num_frames(n) for n in LENGTHS["train"].values())


def test_label_outside_token_list_and_wrong_set_reported_together(layout):
    root, km, dump = layout
    bad = km / "train" / "pseudo_labels_km4.txt"
    bad.write_text(bad.read_text().replace("tr2 13", "tr2 5", 1))
    with pytest.raises(DataError) as err:
        import_hubert1_labels(
            {"train": km / "valid" / "pseudo_labels_km4.txt", "valid": bad},
            root / "hubert1" / "tokens.txt",
            dump,
            root / "t.txt",
            CNN,
        )
    text = str(err.value)
    assert "3 of 3 utterances in" in text and "have no labels" in text  # train side
    assert "belongs to another set" in text and "['va1', 'va2']" in text
    assert "given for set 'train' but 2 of its 2 utterances are in set 'valid'" in text
    assert "utt 'tr2'" in text and "'5'" in text
    assert not (dump / "train" / "text").exists() and not (root / "t.txt").exists()


def test_cli_explicit_files_and_failure_exit_code(layout, capsys):
    root, km, dump = layout
    args = [
        "--token_list",
        str(root / "hubert1" / "tokens.txt"),
        "--dump_dir",
        str(dump),
        "--token_list_out",
        str(root / "tok.txt"),
        "--geometry",
        "400,320,0",
    ]
    assert import_main(["--hubert1_dir", str(km), "--sets", "train", "valid", *args]) == 0
    assert (dump / "valid" / "text").is_file()
    short = root / "short.txt"
    short.write_text("va1 0 0\nva2 0\n")
    assert import_main(["--labels", f"valid={short}", "--sets", "valid", *args]) == 1
    err = capsys.readouterr().err
    assert "utt 'va1'" in err and "utt 'va2'" in err and "2 data problems" in err


def test_special_tokens_before_labels_are_caught(layout):
    root, km, dump = layout
    tokens = root / "esp_tokens.txt"
    tokens.write_text("<blank>\n13\n2\n7\n0\n<sos/eos>\n<unk>\n")  # num_classes inferred: 4
    files = find_label_files(km, ["train"])
    with pytest.raises(DataError, match="id 4 >= num_classes=4"):
        import_hubert1_labels(files, tokens, dump, root / "t.txt", CNN)
