"""``python -m bench.capacity`` end to end on a tiny load: real server, receiver pool and
generator processes; every frame sent is accounted for and the table, JSON and plot are
written. (Speed is what the benchmark prints; nothing here asserts it.)"""
from __future__ import annotations

import json
from pathlib import Path

from bench import capacity


def test_a_tiny_capacity_run_accounts_for_every_frame(tmp_path: Path) -> None:
    rc = capacity.main(["--streams", "2", "--workers", "2", "--seconds", "2", "--warmup", "1",
                        "--out", str(tmp_path), "--tag", "test"])
    assert rc == 0
    name = "capacity-features-clip4+zlib-w2-test"
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert (tmp_path / f"{name}.md").read_text().count("\n| 2 |") == 1
    assert (tmp_path / f"{name}.png").stat().st_size > 0
    assert result["compact_replies"] is True
    (point,) = result["points"]
    assert point["streams"] == 2 and point["sent"] > 0 and point["replies"] > 0
    settled = point["replies"] + point["stale"] + point["incomplete"] + point["errors"] + point["lost"]
    assert settled == point["sent"], point
    assert point["labeled"] == point["replies"]  # compact replies still carry the label
    roles = [p["role"] for p in point["receiver_processes"]]
    assert roles == ["parent", "worker0", "worker1"], roles
    assert all(p["cpu"] is not None and p["rss_mb"] for p in point["receiver_processes"])
    assert point["cpu_ms_per_frame"] > 0
    assert point["generator_cpu_cores"] > 0   # the generator's own share is measured too
    # the side-by-side view of runs reads what the run wrote
    assert capacity.main(["--compare", str(tmp_path / f"{name}.json"), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "capacity-compare.png").stat().st_size > 0
