from __future__ import annotations

import sys
import time

import pytest

from espnet2.bin import launch, run_jobs
from espnet2.recipe.jobs import SlurmConf, parse_job_args, slurm_argv
from espnet2.recipe.launch import LaunchError, launch_argv

SLURM_CONF = """\
command sbatch --export=ALL
option name=* --job-name $0
default time=24:00:00
option time=* --time $0
option mem=* --mem-per-cpu $0
option mem=0
default gpu=0
option gpu=0
option gpu=* --gres=gpu:$0
"""


def test_job_substitution_and_logs(tmp_path):
    out = tmp_path / "out"
    rc = run_jobs.main(
        [
            "JOB=1:3",
            str(tmp_path / "log" / "x.JOB.log"),
            "bash",
            "-c",
            f"echo job JOB > {out}.JOB; echo said JOB",
        ]
    )
    assert rc == 0
    for i in (1, 2, 3):
        assert (tmp_path / f"out.{i}").read_text() == f"job {i}\n"
        log = (tmp_path / "log" / f"x.{i}.log").read_text()
        assert f"said {i}" in log and "# Ended (code 0)" in log and log.startswith("# ")


def test_jobs_run_in_parallel(tmp_path):
    start = time.time()
    assert run_jobs.main(["JOB=1:4", str(tmp_path / "s.JOB.log"), "sleep", "1"]) == 0
    assert time.time() - start < 3.0  # 4 x 1 s in parallel, not 4 s
    start = time.time()
    assert (
        run_jobs.main(
            ["--max_jobs_run", "1", "JOB=1:2", str(tmp_path / "t.JOB.log"), "sleep", "0.6"]
        )
        == 0
    )
    assert time.time() - start >= 1.2


def test_failure_is_nonzero_and_prints_the_failing_log(tmp_path, capsys):
    rc = run_jobs.main(
        [
            "JOB=1:3",
            str(tmp_path / "f.JOB.log"),
            "bash",
            "-c",
            "echo line-JOB; [ JOB != 2 ] || { echo boom >&2; exit 7; }",
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "job 2 failed (exit 7)" in err and "boom" in err and "f.2.log" in err
    assert "job 1 failed" not in err and "1 of 3 jobs failed" in err
    assert "# Ended (code 7)" in (tmp_path / "f.2.log").read_text()


def test_single_job_without_range(tmp_path):
    assert run_jobs.main([str(tmp_path / "one.log"), "echo", "JOB stays"]) == 0
    assert "JOB stays" in (tmp_path / "one.log").read_text()


def test_bad_range():
    with pytest.raises(ValueError, match="bad job range"):
        parse_job_args(["JOB=3:1", "log", "cmd"])


def test_local_backend_refuses_multi_node(tmp_path, capsys):
    assert run_jobs.main(["--num_nodes", "2", str(tmp_path / "l.log"), "true"]) == 2
    assert "cmd_backend=slurm" in capsys.readouterr().err


def test_slurm_conf_and_array_command(tmp_path):
    conf_file = tmp_path / "slurm.conf"
    conf_file.write_text(SLURM_CONF)
    conf = SlurmConf.load(conf_file)
    spec = parse_job_args(["JOB=1:4", "log/x.JOB.log", "python", "-m", "m", "--part", "JOB"])
    argv = slurm_argv(spec, conf, {"mem": "4G", "gpu": "2"}, max_jobs_run=2)
    assert argv[:3] == ["sbatch", "--export=ALL", "--wait"]
    assert "--time" in argv and argv[argv.index("--time") + 1] == "24:00:00"
    assert "--gres=gpu:2" in argv and argv[argv.index("--mem-per-cpu") + 1] == "4G"
    assert "--array=1-4%2" in argv and "--output=log/x.%a.log" in argv
    wrap = next(a for a in argv if a.startswith("--wrap="))
    assert "--part ${SLURM_ARRAY_TASK_ID}" in wrap and "# Ended (code $rc)" in wrap
    multi = slurm_argv(parse_job_args(["l.log", "srun", "x"]), conf, {"gpu": "4"}, num_nodes=2)
    assert "--nodes=2" in multi and "--ntasks-per-node=4" in multi
    assert not any(a.startswith("--array") for a in multi)
    conf_file.write_text("bogus line\n")
    with pytest.raises(ValueError, match=r"slurm.conf:1"):
        SlurmConf.load(conf_file)


TRAIN = ["-m", "espnet2.bin.ssl_train", "--config", "c.yaml"]


def test_launch_single_node_spawns_through_trainer():
    argv = launch_argv("python3 -m espnet2.bin.run_jobs", "exp/train.log", TRAIN, ngpu=4)
    assert argv == [
        "python3",
        "-m",
        "espnet2.bin.run_jobs",
        "--gpu",
        "4",
        "exp/train.log",
        "python3",
        *TRAIN,
        "--ngpu",
        "4",
    ]


def test_launch_multi_node_slurm_uses_srun_one_task_per_gpu():
    cmd = "python3 -m espnet2.bin.run_jobs --backend slurm --config conf/slurm.conf"
    argv = launch_argv(cmd, "exp/train.log", TRAIN, ngpu=8, num_nodes=2)
    i = argv.index("srun")
    assert argv[argv.index("--num_nodes") + 1] == "2" and argv[i - 1] == "exp/train.log"
    assert "--ntasks-per-node=8" in argv[i:] and argv[-2:] == ["--ngpu", "1"]


def test_launch_multi_node_local_needs_rank_then_uses_torchrun():
    with pytest.raises(LaunchError, match="--node_rank"):
        launch_argv("run_jobs", "l", TRAIN, ngpu=2, num_nodes=2)
    with pytest.raises(LaunchError, match="outside 0..1"):
        launch_argv("run_jobs", "l", TRAIN, ngpu=2, num_nodes=2, node_rank=2, master_addr="h")
    argv = launch_argv("run_jobs", "l", TRAIN, ngpu=2, num_nodes=2, node_rank=1, master_addr="h0")
    assert "torch.distributed.run" in argv and "--node_rank=1" in argv
    assert "--master_addr=h0" in argv and "--nproc_per_node=2" in argv


def test_launch_cli_dry_run(capsys):
    assert (
        launch.main(
            [
                "--cmd",
                "run_jobs",
                "--log",
                "l",
                "--ngpu",
                "0",
                "--dry_run",
                "--python",
                sys.executable,
                "--",
                *TRAIN,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip().endswith("--ngpu 0")
    assert launch.main(["--cmd", "x", "--log", "l", "--num_nodes", "2", "--", *TRAIN]) == 2
