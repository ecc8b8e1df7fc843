"""benchmarks/throughput_cost.py runs end to end and reports its parts of the cost per step.

The cost target (at most 1% of the MLP's step) is not asserted: a shared CI machine is too noisy.
"""

import json
import math
import sys

import pytest

from conftest import TEMPLATE, run

pytestmark = pytest.mark.slow


def test_cost_benchmark_reports_each_part(tmp_path):
    out = tmp_path / "cost.json"
    script = TEMPLATE / "benchmarks" / "throughput_cost.py"
    result = run(sys.executable, str(script), "--epochs", "1", "--repeats", "1", "--json", str(out), cwd=tmp_path)
    assert "| median | 21 |" in result.stdout, result.stdout
    (figures,) = json.loads(out.read_text())["runs"]
    assert figures["steps"] == 21 and figures["every_n_steps"] == 50
    for key in ("step_time_us", "step_cpu_us", "work_us", "work_cpu_us", "flop_count_once_ms"):
        assert figures[key] > 0 and math.isfinite(figures[key]), key
    assert figures["dispatch_us"] >= 0 and figures["dispatch_cpu_us"] >= 0
    assert 0 < figures["cost_cpu_fraction"] < 1
