"""benchmarks/throughput.py runs end to end and reports sane figures.

Speed is not asserted here (a loaded machine gives any ratio; the benchmark reports it): what is
asserted fails when the benchmark or the baked pipeline breaks.
"""

import json
import math
import sys

import pytest

from conftest import TEMPLATE, run

pytestmark = pytest.mark.slow


def test_quick_benchmark_prints_the_table(tmp_path):
    out = tmp_path / "throughput.json"
    script = TEMPLATE / "benchmarks" / "throughput.py"
    result = run(sys.executable, str(script), "--quick", "--devices", "cpu", "--json", str(out), cwd=tmp_path)

    for work in ("mlp", "cnn"):
        for pipeline in ("raw eager", "baked default"):
            assert f"| cpu | {work} | {pipeline} |" in result.stdout, result.stdout
    figures = json.loads(out.read_text())
    rows = {(row["work"], row["pipeline"]): row for row in figures["results"]}
    for work in ("mlp", "cnn"):
        baked, raw = rows[work, "baked default"], rows[work, "raw eager"]
        assert raw["samples_per_s"] > 0 and baked["samples_per_s"] > 0
        # The same work on both sides: a pipeline that trains on fewer (or more) examples shows here.
        assert {epoch["samples"] for run in baked["runs"] for epoch in run} == {
            epoch["samples"] for run in raw["runs"] for epoch in run
        }
        assert baked["ratios"]["raw eager"] > 0, baked
        assert baked["first_step_s"][0] > 0 and baked["peak_rss_mb"][0] > 100
    assert all(seconds > 0 and math.isfinite(seconds) for seconds in figures["startup_s"].values())
