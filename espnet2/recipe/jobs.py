"""Job backends for recipe stages: ``local`` (parallel subprocesses) and ``slurm`` (sbatch/srun).

Kaldi's ``run.pl``/``slurm.pl`` interface: ``[options] JOB=1:N LOG CMD...``; the string ``JOB``
in LOG and CMD is replaced by the job index. Every job's log starts with the command and ends
with ``# Ended (code C)``; when a job fails the tail of its log is printed.

Slurm options come from an ESPnet-format ``conf/slurm.conf`` (``command sbatch ...``,
``default name=value``, ``option name=* --flag $0``, ``option name=value --flags``).
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

_RANGE = re.compile(r"^([A-Za-z_]\w*)=(\d+):(\d+)$")
TAIL_LINES = 20


@dataclass
class JobSpec:
    """Parsed ``[JOB=a:b] LOG CMD...``: the variable, range, log template and command template."""

    log: str
    command: str
    var: str = "JOB"
    first: int = 1
    last: int = 1
    array: bool = False

    def indices(self) -> range:
        return range(self.first, self.last + 1)

    def subst(self, text: str, index: int | str) -> str:
        return re.sub(rf"\b{self.var}\b", str(index), text) if self.array else text


def parse_job_args(words: list[str]) -> JobSpec:
    """``["JOB=1:4", "log/x.JOB.log", "cmd", ...]`` -> :class:`JobSpec`."""
    words = list(words)
    spec: dict = {}
    if words and (m := _RANGE.match(words[0])):
        spec = dict(var=m[1], first=int(m[2]), last=int(m[3]), array=True)
        if spec["first"] > spec["last"] or spec["first"] < 1:
            raise ValueError(f"bad job range {words[0]!r}; write JOB=1:N with N >= 1")
        words.pop(0)
    if len(words) < 2:
        raise ValueError("expected [JOB=1:N] LOG COMMAND...; got " + shlex.join(words))
    command = words[1] if len(words) == 2 else shlex.join(words[1:])
    return JobSpec(log=words[0], command=command, **spec)


def wrap(command: str) -> str:
    """The bash script a job runs: header, command, footer with its exit code."""
    return (
        f"echo '# '{shlex.quote(command)}; echo \"# Started at $(date)\"; "
        f'( {command} ); rc=$?; echo "# Ended (code $rc) at $(date)"; exit $rc'
    )


def tail(path: str | Path, n: int = TAIL_LINES) -> str:
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log file {path})"
    return "\n".join(lines[-n:])


def report_failures(failed: list[tuple[int, str, int]], total: int) -> None:
    for index, log, rc in failed:
        sys.stderr.write(f"--- job {index} failed (exit {rc}); last lines of {log}:\n{tail(log)}\n")
    sys.stderr.write(f"{len(failed)} of {total} jobs failed; see the logs above\n")


def run_local(spec: JobSpec, max_jobs_run: int | None = None) -> int:
    """Run every job of ``spec`` as ``bash -c``, up to ``max_jobs_run`` at a time.

    Returns 0 when all jobs succeeded, else 1 (after printing the failing logs' tails).
    """

    def one(index: int) -> tuple[int, str, int]:
        log = spec.subst(spec.log, index)
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w", encoding="utf-8") as f:
            rc = subprocess.call(
                ["bash", "-c", wrap(spec.subst(spec.command, index))],
                stdout=f,
                stderr=subprocess.STDOUT,
            )
        return index, log, rc

    indices = list(spec.indices())
    start = time.time()
    with ThreadPoolExecutor(
        max_workers=max(1, min(max_jobs_run or len(indices), len(indices)))
    ) as ex:
        results = list(ex.map(one, indices))
    failed = [r for r in results if r[2] != 0]
    logger.info("%d jobs finished in %.1f s", len(indices), time.time() - start)
    if failed:
        report_failures(failed, len(indices))
        return 1
    return 0


@dataclass
class SlurmConf:
    """ESPnet ``conf/slurm.conf``: the submit command, option rules and defaults."""

    command: list[str] = field(default_factory=lambda: ["sbatch", "--export=ALL"])
    rules: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None) -> SlurmConf:
        conf = cls()
        if path is None:
            return conf
        for lineno, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            kind, _, rest = line.partition(" ")
            if kind == "command":
                conf.command = shlex.split(rest)
            elif kind in ("default", "option") and "=" in rest.split()[0]:
                name, _, value = rest.split()[0].partition("=")
                if kind == "default":
                    conf.defaults[name] = value
                else:
                    conf.rules.setdefault(name, []).append((value, rest.split()[1:]))
            else:
                raise ValueError(
                    f"{path}:{lineno}: cannot parse {raw!r}; expected 'command ...', "
                    "'default name=value' or 'option name=value|* flags'"
                )
        return conf

    def flags(self, options: dict[str, str]) -> list[str]:
        """sbatch flags for ``options`` (given values override the conf's defaults)."""
        out: list[str] = []
        for name, value in {**self.defaults, **options}.items():
            rules = self.rules.get(name, [])
            exact = [f for v, f in rules if v == value]
            star = [f for v, f in rules if v == "*"]
            if exact:
                out += exact[0]
            elif star:
                out += [w.replace("$0", value) for w in star[0]]
            else:
                out += [f"--{name.replace('_', '-')}={value}"]
        return out


def slurm_argv(
    spec: JobSpec,
    conf: SlurmConf,
    options: dict[str, str],
    num_nodes: int = 1,
    max_jobs_run: int | None = None,
) -> list[str]:
    """The ``sbatch --wait`` command line for ``spec`` (a job array when it has a JOB range).

    Multi-node jobs (``num_nodes > 1``) get ``--nodes`` and one task per GPU on each node; the
    command itself starts the per-node processes (``srun ...``, see espnet2.recipe.launch).
    """
    argv = [*conf.command, "--wait", *conf.flags(options)]
    log = spec.log
    command = spec.command
    if spec.array:
        limit = f"%{max_jobs_run}" if max_jobs_run else ""
        argv.append(f"--array={spec.first}-{spec.last}{limit}")
        log = spec.subst(log, "%a")
        command = spec.subst(command, "${SLURM_ARRAY_TASK_ID}")
    if num_nodes > 1:
        tasks = max(int(options.get("gpu") or 1), 1)
        argv += [f"--nodes={num_nodes}", f"--ntasks-per-node={tasks}"]
    argv += [f"--output={log}", f"--wrap={wrap(command)}"]
    return argv


def run_slurm(
    spec: JobSpec,
    conf: SlurmConf,
    options: dict[str, str],
    num_nodes: int = 1,
    max_jobs_run: int | None = None,
) -> int:
    """Submit with ``sbatch --wait``; on failure print the failing logs' tails."""
    for i in spec.indices():
        Path(spec.subst(spec.log, i)).parent.mkdir(parents=True, exist_ok=True)
    argv = slurm_argv(spec, conf, options, num_nodes, max_jobs_run)
    logger.info("submitting: %s", shlex.join(argv))
    rc = subprocess.call(argv, stdout=subprocess.DEVNULL)
    if rc == 0:
        return 0
    failed = []
    for i in spec.indices():
        log = spec.subst(spec.log, i)
        m = re.search(r"# Ended \(code (\d+)\)", tail(log, 3))
        if m is None or m[1] != "0":
            failed.append((i, log, int(m[1]) if m else rc))
    report_failures(
        failed or [(spec.first, spec.subst(spec.log, spec.first), rc)], len(spec.indices())
    )
    return 1
