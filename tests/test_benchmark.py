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

PIPELINES = {
    "mlp": ("hand-written", "leanest", "Lightning, bare", "Lightning, bare, tuned", "baked default"),
    "image_folder": ("hand-written", "baked default"),
}
# The LM work runs where the template ships model=gpt, and says it is skipped where not.
HAS_GPT = (TEMPLATE / "{{cookiecutter.project}}" / "configs" / "model" / "gpt.yaml").exists()
if HAS_GPT:
    PIPELINES["lm"] = ("hand-written", "leanest", "baked default")


def test_quick_benchmark_prints_the_table_and_writes_the_readme_block(tmp_path):
    out, readme = tmp_path / "throughput.json", tmp_path / "README.md"
    readme.write_text(
        "# Speed\n\n<!-- benchmark cpu-1-thread -->\nold table\n<!-- /benchmark cpu-1-thread -->\n\nAfter.\n"
    )
    script = TEMPLATE / "benchmarks" / "throughput.py"
    arguments = ["--quick", "--devices", "cpu", "--threads", "1", "--repeats", "1", "--json", str(out)]
    result = run(sys.executable, str(script), *arguments, "--readme", str(readme), cwd=tmp_path)

    for work, pipelines in PIPELINES.items():
        for pipeline in pipelines:
            assert f"| {work} | {pipeline} |" in result.stdout, result.stdout
    assert ("lm: skipped" in result.stdout) != HAS_GPT, result.stdout  # said, not silently dropped
    figures = json.loads(out.read_text())
    rows = {(row["work"], row["pipeline"]): row for row in figures["results"]}
    assert set(rows) == {(work, pipeline) for work, pipelines in PIPELINES.items() for pipeline in pipelines}
    for work, pipelines in PIPELINES.items():
        # The same work on every pipeline: one that trains on fewer (or more) examples shows here.
        samples = {
            pipeline: {e["samples"] for run in rows[work, pipeline]["runs"] for e in run} for pipeline in pipelines
        }
        assert len(set(map(frozenset, samples.values()))) == 1, samples
        assert all(rows[work, pipeline]["rate"] > 0 for pipeline in pipelines)
        baked = rows[work, "baked default"]
        assert baked["first_step_s"][0] > 0 and baked["peak_rss_mb"][0] > 100
    assert all(seconds > 0 and math.isfinite(seconds) for seconds in figures["startup_s"].values())

    text = readme.read_text()
    block = text.split("<!-- benchmark cpu-1-thread -->\n")[1].split("<!-- /benchmark cpu-1-thread -->")[0]
    assert "old table" not in text and text.startswith("# Speed\n") and text.endswith("\n\nAfter.\n")
    assert "| mlp | baked default |" in block and "--quick" in block and "Load average" in block
    assert ("PASS" in block) or ("MISS" in block)
