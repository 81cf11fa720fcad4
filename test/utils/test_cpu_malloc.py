"""glibc malloc tuning: applied once on glibc, skipped when opted out or user-tuned."""

from __future__ import annotations

import platform

import pytest

from espnet2.utils import cpu_malloc


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(cpu_malloc, "_applied", None)
    for key in (*cpu_malloc.USER_TUNABLES, cpu_malloc.ENV_SWITCH):
        monkeypatch.delenv(key, raising=False)


def test_opt_out(monkeypatch):
    monkeypatch.setenv(cpu_malloc.ENV_SWITCH, "0")
    assert cpu_malloc.tune_cpu_malloc() is None
    assert cpu_malloc._applied is None


def test_user_tunables_win(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert cpu_malloc.tune_cpu_malloc() is None
    assert "MALLOC_TRIM_THRESHOLD_" in cpu_malloc._skip_reason()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc-only")
def test_applied_once_on_glibc():
    first = cpu_malloc.tune_cpu_malloc(mmap_threshold=16 * cpu_malloc.MIB)
    assert first == {"mmap_threshold": 16 * cpu_malloc.MIB,
                     "trim_threshold": 1024 * cpu_malloc.MIB,
                     "top_pad": 64 * cpu_malloc.MIB}
    # idempotent: a second call keeps the first settings
    assert cpu_malloc.tune_cpu_malloc(mmap_threshold=1) is first


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc-only")
def test_refused_value_is_reported(monkeypatch, caplog):
    class FakeLibc:
        @staticmethod
        def mallopt(param, value):  # what glibc returns for a value it rejects
            return 0

    monkeypatch.setattr(cpu_malloc.ctypes, "CDLL", lambda name: FakeLibc())
    assert cpu_malloc.tune_cpu_malloc() is None
    assert cpu_malloc._applied is None
    assert "refused mmap_threshold" in caplog.text
