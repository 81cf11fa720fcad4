"""validate_labels reports every problem at once, with utt ids, numbers and causes."""

from __future__ import annotations

import pytest

from espnet2.bin.label_quality import main as quality_main
from espnet2.data.frames import FrameGeometry
from espnet2.labels.validate import parse_geometry, validate_labels

CNN = FrameGeometry(400, 320, 0)


def make_set(tmp_path, lengths: dict[str, int]):
    d = tmp_path / "set"
    d.mkdir()
    (d / "utt2num_samples").write_text("".join(f"{u} {n}\n" for u, n in lengths.items()))
    (d / "wav.scp").write_text("".join(f"{u} /nowhere/{u}.wav\n" for u in lengths))
    return d


def write_labels(path, rows: dict[str, list]):
    path.write_text("".join(" ".join([u, *map(str, lab)]) + "\n" for u, lab in rows.items()))
    return path


def test_clean_set_has_no_problem(tmp_path):
    d = make_set(tmp_path, {"a": 16000, "b": 8000})
    text = write_labels(
        tmp_path / "text", {u: [1] * CNN.num_frames(n) for u, n in {"a": 16000, "b": 8000}.items()}
    )
    tokens = ["0", "1", "2", "<sos/eos>", "<unk>"]
    assert validate_labels(d, text, tokens, "wav2vec_cnn", num_classes=3) == []
    # within tolerance is fine too
    write_labels(text, {"a": [1] * (CNN.num_frames(16000) + 2), "b": [0] * CNN.num_frames(8000)})
    assert validate_labels(d / "utt2num_samples", text, tokens, CNN) == []


def test_reports_all_problems_at_once(tmp_path):
    lengths = {"a": 16000, "b": 16000, "c": 32000, "d": 8000}
    d = make_set(tmp_path, lengths)
    rows = {
        "a": [0] * CNN.num_frames(16000),
        "b": [0] * 2 * CNN.num_frames(16000),  # 100 Hz labels
        "c": [0, 7, 9] + [1] * (CNN.num_frames(32000) - 3),  # 7 and 9 not in the list
        "x": [0, 1],  # no audio
    }
    text = write_labels(tmp_path / "text", rows)  # d has no labels
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("0\n1\n2\n<sos/eos>\\n<unk>\n")  # hubert1 layout
    problems = validate_labels(d, text, tokens, CNN, num_classes=4)
    text_all = "\n".join(map(str, problems))
    assert len(problems) == 5, text_all
    by_utt = {p.utt: p for p in problems}
    assert (
        by_utt["b"].line == 2
        and "98 labels but 49 encoder frames for 16000 samples" in str(by_utt["b"])
        and "100 Hz" in by_utt["b"].hint
    )
    assert by_utt["c"].line == 3 and by_utt["c"].value == "7 9"
    assert "1 of 4 utterances" in str(by_utt["d"]) and "have no labels" in str(by_utt["d"])
    assert "1 of 4 labelled utterances are not in" in str(by_utt["x"])
    assert any("3 label tokens but num_classes=4" in str(p) for p in problems)


def test_empty_and_mismatched_token_lists(tmp_path):
    d = make_set(tmp_path, {"a": 16000})
    text = write_labels(tmp_path / "text", {"a": [0] * CNN.num_frames(16000)})
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    problems = validate_labels(d, text, empty, CNN)
    assert any("empty" in str(p) for p in problems)
    train = ["0", "1", "<sos/eos>", "<unk>"]
    valid = ["1", "0", "<sos/eos>", "<unk>"]
    (p,) = validate_labels(d, text, valid, CNN, train_token_list=train)
    assert "differs from train's token list" in p.message and p.line == 1
    # specials before labels: label ids >= num_classes
    problems = validate_labels(d, text, ["<blank>", "<unk>", "0", "1"], CNN, num_classes=2)
    assert any("id 3 >= num_classes=2" in str(p) for p in problems)


def test_many_length_problems_are_counted(tmp_path):
    lengths = {f"u{i:02d}": 16000 for i in range(30)}
    d = make_set(tmp_path, lengths)
    text = write_labels(tmp_path / "text", {u: [0] * 10 for u in lengths})
    problems = validate_labels(d, text, ["0"], CNN, max_per_kind=5)
    assert sum(p.utt is not None for p in problems) == 5
    assert "25 more utterances with the same length problem" in str(problems[-1])
    assert len(validate_labels(d, text, ["0"], CNN, max_per_kind=None)) == 30


def test_parse_geometry():
    assert parse_geometry("wav2vec_cnn") == CNN
    assert parse_geometry("400,160") == FrameGeometry(400, 160, 0)
    assert parse_geometry("512,160,256") == FrameGeometry(512, 160, 256)
    with pytest.raises(ValueError, match="receptive_field,stride"):
        parse_geometry("cnn")


def test_validate_cli_exits_nonzero_listing_problems(tmp_path, capsys):
    d = make_set(tmp_path, {"a": 16000, "b": 16000})
    text = write_labels(tmp_path / "text", {"a": [5] * 3})
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("0\n1\n")
    rc = quality_main(
        [
            "--validate",
            "--data_dir",
            str(d),
            "--labels",
            str(text),
            "--token_list",
            str(tokens),
            "--geometry",
            "wav2vec_cnn",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "3 data problems" in err and "utt 'a'" in err and "utt 'b'" in err
    write_labels(text, {u: [1] * CNN.num_frames(16000) for u in "ab"})
    assert (
        quality_main(
            ["--validate", "--data_dir", str(d), "--labels", str(text), "--token_list", str(tokens)]
        )
        == 0
    )


def test_duplicates_and_missing_files(tmp_path):
    d = make_set(tmp_path, {"a": 16000})
    text = tmp_path / "text"
    text.write_text("a 0\na 0\n")
    problems = validate_labels(d, text, ["0"], CNN, tolerance=100)
    assert [(p.line, p.utt) for p in problems] == [(2, "a")] and "line 1" in problems[0].message
    problems = validate_labels(tmp_path / "nope", tmp_path / "none.txt", ["0"], CNN)
    assert {p.file for p in problems} == {str(tmp_path / "nope"), str(tmp_path / "none.txt")}
