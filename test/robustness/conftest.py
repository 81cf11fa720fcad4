"""Shared fixtures of the robustness suite: a tiny synthetic corpus and an in-process CLI runner.

``corpus`` is :func:`espnet2.testing.corpus.write_corpus` in ``tmp_path`` (4 + 2 utterances of
8 kHz noise, frame-aligned labels, shape files, tokens.txt, a width-16 one-block HuBERT YAML).
``ssl_train(cmd)`` runs ``SSLTask.main(cmd)`` in this process (the real CLI path: parse,
preflight, output dir, train) and returns ``(exit code, stderr)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from espnet2.testing.corpus import Corpus, snapshot, write_corpus


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    return write_corpus(tmp_path)


@pytest.fixture
def ssl_train(capsys):
    """``run(cmd) -> (exit_code, stderr)``; 0 when ``main`` returned normally."""
    from espnet2.tasks.ssl import SSLTask

    def run(cmd: list[str]) -> tuple[int, str]:
        capsys.readouterr()
        try:
            SSLTask.main(cmd)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            _close_log_handlers()
        return code, capsys.readouterr().err

    return run


def _close_log_handlers() -> None:
    """``setup_logging`` adds a train.log handler per run; close it so tmp dirs can go."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler):
            h.close()
            root.removeHandler(h)


def assert_untouched(corpus: Corpus, before: dict[str, bytes], out: Path) -> None:
    """The user's files are byte-identical and the refused run wrote nothing."""
    assert snapshot(corpus.user_files()) == before
    assert not out.exists(), f"refused run left {sorted(p.name for p in out.rglob('*'))}"


def no_partial_files(out: Path) -> list[str]:
    """Names of temp files (atomic_write's ``.<name>.*.tmp``) left in ``out``."""
    return sorted(p.name for p in out.rglob("*") if p.name.endswith(".tmp"))
