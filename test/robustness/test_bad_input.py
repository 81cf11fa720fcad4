"""Bad input never costs a user their run: each case is refused with a clear error (file and
line or utterance, the value, what to do) and nothing is written or lost.

Most cases go through the real CLI (``SSLTask.main``), so the preflight path is what is tested:
the refused run must exit 2, leave ``--output_dir`` uncreated and every user file byte-identical.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile
import yaml
from conftest import assert_untouched, no_partial_files

from espnet2.testing.corpus import FS, GEOMETRY, snapshot


def _refused(corpus, ssl_train, extra=(), *, labels=True, shapes=True, code=2) -> str:
    """Run ssl_train on ``corpus``; assert it is refused and left nothing behind."""
    before = snapshot(corpus.user_files())
    out = corpus.root / "exp"
    got, err = ssl_train(corpus.args(out, labels=labels, shapes=shapes, extra=list(extra)))
    assert got == code, err[-3000:]
    assert_untouched(corpus, before, out)
    return err


def _lines(path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _set_line(path, i: int, line: str) -> None:
    lines = _lines(path)
    lines[i] = line
    path.write_text("".join(lines))


def _write_wav(path, samples, fs=FS, subtype="PCM_16") -> None:
    soundfile.write(path, samples, fs, subtype=subtype)


# ----------------------------------------------------------------------------- audio
def test_missing_audio_file(corpus, ssl_train):
    corpus.wav("train_01").unlink()
    err = _refused(corpus, ssl_train)
    assert f"{corpus.wav_scp()}:2: utt 'train_01': audio file does not exist" in err
    assert str(corpus.wav("train_01")) in err and "Fix:" in err


def test_corrupt_audio_file(corpus, ssl_train):
    corpus.wav("train_02").write_bytes(b"RIFF\x00\x00garbage, not a wav file" * 4)
    err = _refused(corpus, ssl_train)
    assert f"{corpus.wav_scp()}:3: utt 'train_02': cannot decode audio" in err
    assert "format_wav_scp" in err  # what to do


def test_bad_kaldi_archive_references(corpus, ssl_train):
    """``data.ark:OFFSET`` values: a missing archive and an offset that is not an audio entry."""
    ark = corpus.root / "feats.ark"
    ark.write_bytes(b"utt \x00BFM \x04\x03\x00\x00\x00" + b"\x00" * 40)  # a Kaldi matrix
    _set_line(corpus.wav_scp(), 1, f"train_01 {ark}:4\n")
    _set_line(corpus.wav_scp(), 2, f"train_02 {corpus.root}/gone.ark:4\n")
    err = _refused(corpus, ssl_train)
    assert f"{corpus.wav_scp()}:2: utt 'train_01': no audio entry at offset 4" in err
    assert "not audio" in err and "wav-copy" in err  # what it is, what writes audio arks
    assert f"{corpus.wav_scp()}:3: utt 'train_02': archive file does not exist" in err


def test_zero_length_audio(corpus, ssl_train):
    _write_wav(corpus.wav("train_00"), np.zeros(0))
    _set_line(corpus.shape(), 0, "train_00 0\n")
    err = _refused(corpus, ssl_train)
    assert f"{corpus.wav_scp()}:1: utt 'train_00': audio is empty (0 samples)" in err
    assert "--min_wav_duration" in err


def test_wrong_sample_rate(corpus, ssl_train):
    n = int(_lines(corpus.shape())[3].split()[1])
    _write_wav(corpus.wav("train_03"), 0.1 * np.ones(n), fs=16000)
    err = _refused(corpus, ssl_train)
    assert "utt 'train_03': sampling rate is 16000 Hz, the frontend expects 8000 Hz" in err
    assert "--fs 8000" in err


def test_stereo_audio(corpus, ssl_train):
    n = int(_lines(corpus.shape("valid"))[1].split()[1])
    _write_wav(corpus.wav("valid_01", "valid"), 0.1 * np.ones((n, 2)))
    err = _refused(corpus, ssl_train)
    assert f"{corpus.wav_scp('valid')}:2: utt 'valid_01': audio has 2 channels" in err
    assert "downmix" in err


def test_audio_changed_after_collect_stats(corpus, ssl_train):
    _write_wav(corpus.wav("train_01"), 0.1 * np.ones(3000))
    _set_line(corpus.shape(), 1, "train_01 3333\n")
    err = _refused(corpus, ssl_train, labels=False,
                   extra=["--loss", "[{name: dinosr, conf: {num_codebooks: 1}}]", "--util", "[]"])
    assert "utt 'train_01': the shape file says 3333 samples but the audio has 3000" in err
    assert "rerun stage 6" in err


def test_nan_samples_named_by_the_loader(corpus, ssl_train):
    """NaN/Inf needs decoding (not a header check): the loader names the utterance; no
    checkpoint or temp file is left, the data stays byte-identical."""
    n = int(_lines(corpus.shape())[2].split()[1])
    wave = 0.1 * np.ones(n)
    wave[10], wave[20] = np.nan, np.inf
    _write_wav(corpus.wav("train_02"), wave, subtype="FLOAT")
    before = snapshot(corpus.user_files())
    out = corpus.root / "exp"
    code, err = ssl_train(corpus.args(out))
    assert code == 2
    assert "utt 'train_02'" in err and "audio contains NaN or Inf" in err
    assert "2 non-finite samples" in err and str(corpus.wav("train_02")) in err
    assert snapshot(corpus.user_files()) == before
    assert not list(out.glob("*.pth")) and not no_partial_files(out)
    assert "audio contains NaN or Inf" in (out / "train.log").read_text()


# ----------------------------------------------------------------------------- data files
def test_duplicate_utt_ids(corpus, ssl_train):
    lines = _lines(corpus.wav_scp())
    corpus.wav_scp().write_text("".join([*lines, lines[0]]))
    err = _refused(corpus, ssl_train)
    assert f"{corpus.wav_scp()}:5: utt 'train_00': duplicate utterance id (first seen on line 1)" \
        in err
    assert "sort -u" in err


def test_utt_sets_disagree(corpus, ssl_train):
    corpus.text().write_text("".join(_lines(corpus.text())[1:]))  # train_00 has no labels
    with open(corpus.shape(), "a") as f:
        f.write("ghost 3000\n")
    err = _refused(corpus, ssl_train)
    assert f"{corpus.text()}: utt 'train_00': utterance ids disagree" in err
    assert "'ghost'" in err and str(corpus.shape()) in err
    assert "fix_data_dir.sh" in err


def test_malformed_lines_in_wav_scp_and_text_reported_together(corpus, ssl_train):
    _set_line(corpus.wav_scp(), 1, "train_01\n")  # no path
    _set_line(corpus.text("valid"), 0, "\n")  # blank line
    err = _refused(corpus, ssl_train)
    assert f"{corpus.wav_scp()}:2: utt 'train_01': line has a key but no" in err
    assert f"{corpus.text('valid')}:1: blank line" in err


def test_missing_wav_scp(corpus, ssl_train):
    corpus.wav_scp("valid").unlink()
    err = _refused(corpus, ssl_train)
    assert f"{corpus.wav_scp('valid')}: value file not found" in err


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize("factor,cause", [(2, "label_downsampling: 2"),
                                          (0.5, "2x sparser")])
def test_labels_too_long_or_too_short(corpus, ssl_train, factor, cause):
    lines = _lines(corpus.text())
    utt, *labels = lines[1].split()
    labels = labels * 2 if factor == 2 else labels[: len(labels) // 2]
    _set_line(corpus.text(), 1, " ".join([utt, *labels]) + "\n")
    n = int(_lines(corpus.shape())[1].split()[1])
    err = _refused(corpus, ssl_train)
    assert f"utt 'train_01': {len(labels)} labels but {GEOMETRY.num_frames(n)} frames for " \
        f"{n} samples" in err
    assert cause in err


def test_labels_outside_token_list(corpus, ssl_train):
    utt, *labels = _lines(corpus.text())[2].split()
    labels[3] = "99"
    _set_line(corpus.text(), 2, " ".join([utt, *labels]) + "\n")
    err = _refused(corpus, ssl_train)
    assert f"{corpus.text()}: 1 label token(s) not in the token list" in err
    assert "'99' (utt 'train_02')" in err and "use the token list the labels were made" in err


def test_special_token_used_as_label(corpus, ssl_train):
    utt, *labels = _lines(corpus.text())[0].split()
    labels[0] = "<unk>"
    _set_line(corpus.text(), 0, " ".join([utt, *labels]) + "\n")
    err = _refused(corpus, ssl_train)
    assert "'<unk>' (id 11, utt 'train_00')" in err and "num_classes=10" in err


def test_empty_token_list(corpus, ssl_train):
    corpus.tokens.write_text("")
    err = _refused(corpus, ssl_train)
    assert f"{corpus.tokens}: token list is empty" in err and "stage 5" in err


def test_missing_token_list_for_label_loss(corpus, ssl_train):
    args = corpus.args(corpus.root / "exp")
    i = args.index("--token_list")
    del args[i:i + 2]
    before = snapshot(corpus.user_files())
    code, err = ssl_train(args)
    assert code == 2 and "a label loss needs --token_list" in err
    assert_untouched(corpus, before, corpus.root / "exp")


def test_token_list_file_not_found(corpus, ssl_train):
    corpus.tokens.unlink()
    err = _refused(corpus, ssl_train)
    assert f"{corpus.tokens}: token list not found" in err


def test_num_classes_smaller_than_token_list(corpus, ssl_train):
    err = _refused(corpus, ssl_train,
                   ["--loss", "[{name: hubert, conf: {final_dim: 8, num_classes: 5}}]"])
    assert "loss[0].conf.num_classes=5 but the token list has label tokens up to id 9" in err
    assert "set num_classes to 10" in err


# ----------------------------------------------------------------------------- config
def test_unknown_yaml_key_suggests_closest(corpus, ssl_train):
    corpus.config.write_text(corpus.config.read_text() + "max_epochs: 3\nbatch_bin: 100\n")
    err = _refused(corpus, ssl_train)
    assert f"{corpus.config}: unknown key 'max_epochs' (did you mean 'max_epoch'?)" in err
    assert "unknown key 'batch_bin' (did you mean 'batch_bins'?)" in err
    assert "2 config problem(s)" in err


def test_unknown_conf_key_and_cli_flag(corpus, ssl_train):
    err = _refused(corpus, ssl_train, ["--encoder_conf", "num_block=3"])
    assert "num_block" in err and "did you mean 'num_blocks'" in err
    err = _refused(corpus, ssl_train, ["--max_epochz", "3"])
    assert "--max_epochz (did you mean '--max_epoch'?)" in err


def test_wrong_value_types(corpus, ssl_train):
    text = corpus.config.read_text().replace("max_epoch: 1", "max_epoch: 1.5")
    corpus.config.write_text(text.replace("batch_bins: 16000", "batch_bins: lots"))
    err = _refused(corpus, ssl_train)
    assert "max_epoch: 1.5: expected an integer" in err
    assert "batch_bins: 'lots': expected a size like 16k" in err


def test_dinosr_with_mask_prob_zero(corpus, ssl_train):
    err = _refused(corpus, ssl_train, [
        "--loss", "[{name: dinosr, conf: {num_codebooks: 1, codebook_size: 4}}]",
        "--util", "[{name: mask, conf: {mask_prob: 0.0}}]"], labels=False)
    assert "mask_prob=0.0 but loss ['dinosr'] learns from masked frames" in err
    assert "use mask_prob > 0" in err


def test_options_a_component_rejects_are_preflight_problems(corpus, ssl_train):
    """Checks inside constructors (here: the HuBERT loss and the encoder) are found by building
    the model on the meta device in the preflight: reported with the data problems, exit 2,
    nothing written (a traceback from the worker would leave a config.yaml behind that
    refuses the corrected rerun)."""
    corpus.wav("train_00").unlink()
    err = _refused(corpus, ssl_train, [
        "--loss", "[{name: hubert, conf: {final_dim: 8, pred_nomask_weight: 1.0}}]"])
    assert "loss[0] 'hubert': ValueError: HuBERTLoss: invalid options: skip_nomask=True with " \
        "pred_nomask_weight=1.0 (set skip_nomask: false" in err
    assert "fix the conf of loss 'hubert' in the YAML" in err
    assert "utt 'train_00': audio file does not exist" in err  # reported together
    err = _refused(corpus, ssl_train, ["--encoder_conf", "attention_heads=3"])
    assert "encoder 'transformer':" in err and "fix encoder_conf" in err


@pytest.mark.parametrize("loss,labels,expected", [
    ("[{name: hubert, conf: {final_dim: 8, layers: [0, -2], loss_weights: [1, 1]}}]", True,
     "loss 'hubert': layers=[0, -2]: [-2] out of range for an encoder with 1 blocks"),
    ("[{name: dinosr, conf: {num_codebooks: 2, codebook_size: 4}}]", False,
     "loss 'dinosr': num_codebooks=2: one codebook per top teacher block, but the encoder "
     "has 1 blocks (use <= 1)"),
    ("[{name: data2vec, conf: {average_top_k_layers: 3}}]", False,
     "loss 'data2vec': average_top_k_layers=3 but the encoder has 1 blocks (use <= 1)"),
], ids=["hubert_layers", "dinosr_codebooks", "data2vec_top_k"])
def test_loss_needing_more_blocks_than_the_encoder_has(corpus, ssl_train, loss, labels,
                                                       expected):
    """Found when the model is built (the preflight's meta build), not at the first forward
    in the worker after config.yaml was written."""
    err = _refused(corpus, ssl_train, ["--loss", loss], labels=labels)
    assert expected in err and "the encoder's num_blocks" in err


@pytest.mark.parametrize("shapes", [True, False], ids=["shape_file", "audio_headers"])
def test_batch_bins_smaller_than_one_utterance(corpus, ssl_train, shapes):
    lengths = {u: int(n) for u, n in (ln.split() for ln in _lines(corpus.shape()))}
    longest = max(lengths, key=lengths.get)
    err = _refused(corpus, ssl_train, ["--batch_bins", "2000"], shapes=shapes)
    assert f"train: batch_bins=2000 is smaller than the longest utterance '{longest}' " \
        f"({lengths[longest]} samples)" in err
    assert "raise batch_bins" in err


def test_output_dir_with_a_different_config(corpus, ssl_train):
    out = corpus.root / "exp"
    code, err = ssl_train(corpus.args(out))
    assert code == 0, err[-2000:]
    before, user = snapshot(out), snapshot(corpus.user_files())
    code, err = ssl_train(corpus.args(out, extra=["--max_epoch", "2"]))
    assert code == 2
    assert "holds a different config (1 key(s) differ: max_epoch: 1 -> 2)" in err
    assert "Nothing was overwritten" in err and "--resume true" in err
    assert snapshot(out) == before and snapshot(corpus.user_files()) == user


# ----------------------------------------------------------------------------- together
def test_every_problem_reported_at_once(corpus, ssl_train):
    corpus.wav("train_00").unlink()
    n = int(_lines(corpus.shape("valid"))[0].split()[1])
    _write_wav(corpus.wav("valid_00", "valid"), 0.1 * np.ones((n, 2)), fs=16000)
    utt, *labels = _lines(corpus.text())[3].split()
    _set_line(corpus.text(), 3, " ".join([utt, *labels, "x7"]) + "\n")
    err = _refused(corpus, ssl_train, ["--batch_bins", "1000",
                                       "--util", "[{name: mask, conf: {mask_prob: 0}}]"])
    found = {
        "missing audio": "utt 'train_00': audio file does not exist",
        "sampling rate": "utt 'valid_00': sampling rate is 16000 Hz",
        "channels": "utt 'valid_00': audio has 2 channels",
        "unknown label": "'x7' (utt 'train_03')",
        "batch_bins": "batch_bins=1000 is smaller",
        "mask": "mask_prob=0",
    }
    missing = [k for k, v in found.items() if v not in err]
    assert not missing, err
    count = int(re.search(r"(\d+) problem\(s\) found before training", err).group(1))
    assert count >= len(found)


# ----------------------------------------------------------------------------- label import
def test_hubert1_label_file_for_another_set(corpus, tmp_path):
    """hubert1 labels given for the wrong set: every problem named, nothing written."""
    from espnet2.data.errors import DataError
    from espnet2.labels.import_hubert1 import import_hubert1_labels

    src = tmp_path / "hubert1"
    for phase in ("train", "valid"):
        (src / phase).mkdir(parents=True)
        (src / phase / "pseudo_labels_km10.txt").write_bytes(corpus.text(phase).read_bytes())
        utt2n = corpus.data_dir(phase) / "utt2num_samples"
        utt2n.write_bytes(corpus.shape(phase).read_bytes())
    (src / "tokens.txt").write_text("\n".join(map(str, range(10))) + "\n<sos/eos>\\n<unk>\n")
    before = snapshot(corpus.user_files())
    out_tokens = tmp_path / "exp_tokens.txt"
    swapped = {"train": src / "valid" / "pseudo_labels_km10.txt",
               "valid": src / "train" / "pseudo_labels_km10.txt"}
    with pytest.raises(DataError) as e:
        import_hubert1_labels(swapped, src / "tokens.txt", corpus.root / "data", out_tokens,
                              GEOMETRY)
    text = str(e.value)
    assert "given for set 'train' but 2 of its 2 utterances are in set 'valid'" in text
    assert "swap the --labels" in text
    assert str(swapped["train"]) in text
    assert snapshot(corpus.user_files()) == before and not out_tokens.exists()
    # the right mapping imports; the labels are unchanged
    good = {k: src / k / "pseudo_labels_km10.txt" for k in ("train", "valid")}
    import_hubert1_labels(good, src / "tokens.txt", corpus.root / "data", out_tokens, GEOMETRY)
    assert corpus.text().read_bytes() == before[str(corpus.text())]
    assert yaml.safe_load(corpus.config.read_text())["loss"][0]["name"] == "hubert"
