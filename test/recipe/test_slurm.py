"""The slurm job backend against a real one-node Slurm (slurmctld + slurmd on loopback).

The fixture starts its own daemons (Debian's slurm-wlm, auth/none) in a temp dir; it skips
only when the Slurm daemons are not installed or the test does not run as root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from espnet2.bin import run_jobs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    if not (shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("sbatch")):
        msg = "Slurm is not installed: run `bash tools/install.sh --test` as root (slurm-wlm)"
        if os.environ.get("CI"):
            pytest.fail(msg)  # CI installs it through the README's test command
        pytest.skip(msg)
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root")
    host = socket.gethostname().split(".")[0]
    conf = tmp_path / "slurm.conf"
    for d in ("state", "spool"):
        (tmp_path / d).mkdir()
    conf.write_text(f"""ClusterName=t{os.getpid()}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={tmp_path}/state
SlurmdSpoolDir={tmp_path}/spool
SlurmctldPidFile={tmp_path}/ctld.pid
SlurmdPidFile={tmp_path}/d.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    procs = [
        subprocess.Popen(
            [daemon, "-D", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for daemon in ("slurmctld", "slurmd")
    ]
    try:
        for _ in range(60):
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
            if out.stdout.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"Slurm did not come up: {out.stdout} {out.stderr}")
        yield tmp_path
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


def test_slurm_array_jobs_substitute_and_fail_loudly(slurm, capsys):
    conf = slurm / "jobs.conf"
    conf.write_text("command sbatch --export=ALL\noption num_threads=* --cpus-per-task $0\n")
    rc = run_jobs.main(
        [
            "--backend",
            "slurm",
            "--config",
            str(conf),
            "--num_threads",
            "1",
            "JOB=1:3",
            str(slurm / "log" / "x.JOB.log"),
            "bash",
            "-c",
            f"echo job JOB > {slurm}/out.JOB",
        ]
    )
    assert rc == 0
    for i in (1, 2, 3):
        assert (slurm / f"out.{i}").read_text() == f"job {i}\n"
        assert "# Ended (code 0)" in (slurm / "log" / f"x.{i}.log").read_text()
    rc = run_jobs.main(
        [
            "--backend",
            "slurm",
            "--config",
            str(conf),
            "JOB=1:2",
            str(slurm / "log" / "f.JOB.log"),
            "bash",
            "-c",
            "[ JOB = 1 ] || { echo broken-JOB; exit 5; }",
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "job 2 failed (exit 5)" in err and "broken-2" in err and "job 1 failed" not in err
