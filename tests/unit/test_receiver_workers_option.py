"""``python -m receiver --workers``: how many worker processes a command line asks for."""
from __future__ import annotations

import pytest

from receiver.__main__ import parse, worker_argv, workers_for
from receiver.pool import default_workers
from splitcore.process.cpus import available


def test_auto_is_one_per_core_or_one_per_cpu_of_cpus() -> None:
    assert workers_for(parse([])) == default_workers() == len(available())
    assert workers_for(parse(["--workers", "auto"])) == default_workers()
    one = str(min(available()))
    assert workers_for(parse(["--cpus", one])) == 1       # a receiver pinned to one CPU stays one process
    assert workers_for(parse(["--workers", "3", "--cpus", one])) == 3   # as asked: the three share that CPU


def test_a_bad_count_is_refused_at_parse_time(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "-2", "many"):
        with pytest.raises(SystemExit) as exc:
            parse(["--workers", bad])
        assert exc.value.code == 2
        assert "--workers" in capsys.readouterr().err


def test_the_workers_get_every_argument_but_workers() -> None:
    argv = ["--room", "r", "--workers", "2", "--cpus", "0", "--workers=4", "--summary"]
    assert worker_argv(argv) == ["--room", "r", "--cpus", "0", "--summary"]


def test_the_parent_of_workers_loads_neither_aiortc_nor_onnx_runtime() -> None:
    """A ``--workers N`` parent only signals and adds up stats: what it imports (the
    receiver's command line, the pool, signaling, the stats publisher, the manifest) must
    not pull in aiortc (with PyAV) or ONNX Runtime, about 60 MB it would hold for nothing."""
    import subprocess
    import sys
    code = ("import sys, receiver.__main__, receiver.pool; from splitcore.runtime.models import Manifest; "
            "Manifest.load(None); print(sorted(m for m in ('aiortc', 'av', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
