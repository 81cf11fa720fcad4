from __future__ import annotations

from pathlib import Path

from espnet2.recipe import stats


def _scp(d: Path, n: int) -> Path:
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("".join(f"u{i:02d} /x/{i}.flac\n" for i in range(n)))
    return d


def test_num_jobs_is_bounded_by_both_sets(tmp_path):
    train, valid = _scp(tmp_path / "t", 10), _scp(tmp_path / "v", 3)
    assert stats.num_jobs(32, train, valid) == 3
    assert stats.num_jobs(2, train, valid) == 2


def test_split_keys_partitions_in_order(tmp_path):
    train = _scp(tmp_path / "t", 10)
    stats.split_keys(train / "wav.scp", 3, tmp_path / "log", "train")
    parts = [(tmp_path / "log" / f"train.{i}.scp").read_text().split()[::2] for i in (1, 2, 3)]
    assert [len(p) for p in parts] == [3, 3, 4]
    assert sum(parts, []) == [f"u{i:02d}" for i in range(10)]


def test_job_command_streams_and_job_placeholder(tmp_path):
    cmd = stats.job_command(Path("T"), Path("V"), Path("L"), True, ["--config", "c.yaml"])
    text = " ".join(cmd)
    assert "--collect_stats true" in text and "--train_shape_file L/train.JOB.scp" in text
    assert "--train_data_path_and_name_and_type T/text,text,text" in text
    assert "--valid_data_path_and_name_and_type V/wav.scp,speech,sound" in text
    assert text.endswith("--output_dir L/stats.JOB --config c.yaml")
    no_text = " ".join(stats.job_command(Path("T"), Path("V"), Path("L"), False, []))
    assert "text,text,text" not in no_text


def test_job_command_runs_each_parallel_job_on_one_thread():
    """The nj jobs start together and cannot see each other's load: one torch thread each,
    unless the caller's extra arguments (parsed last, so they win) say otherwise."""
    from espnet2.tasks.ssl import SSLTask

    cmd = stats.job_command(Path("T"), Path("V"), Path("L"), False, [])
    i = cmd.index("--num_threads")
    assert cmd[i + 1] == "1"
    user = stats.job_command(Path("T"), Path("V"), Path("L"), False, ["--num_threads", "3"])
    args = SSLTask.get_parser().parse_known_args(user[3:])[0]
    assert args.num_threads == 3
