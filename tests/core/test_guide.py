"""The user guide's patterns 1-5, executed verbatim, print what a reader expects."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
GUIDE = REPO_ROOT.parent / "shared" / "graphflow-parallel-patterns.md"

# The guide lives beside the repository in our workspace (and in CI), not in a clone of it.
pytestmark = pytest.mark.skipif(
    not GUIDE.is_file(), reason=f"the user guide is not beside this clone: {GUIDE}"
)


def _pattern_blocks():
    """The ```python blocks of sections 'Pattern 1' to 'Pattern 5', in order."""
    assert GUIDE.is_file(), f"guide not found beside the repository: {GUIDE}"
    text = GUIDE.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)
    blocks = []
    for number in range(1, 6):
        (section,) = [s for s in sections if re.match(rf"\W*Pattern {number}:", s)]
        found = re.findall(r"```python\n(.*?)```", section, flags=re.S)
        assert found, f"no python block in pattern {number}"
        blocks.extend(found)
    return blocks


@pytest.fixture(scope="module")
def guide_run():
    """Run the five patterns as one script, as a reader pasting them in order would."""
    source = "import time, random\nrandom.seed(20240501)\n" + "\n".join(_pattern_blocks())
    namespace: dict[str, object] = {"__name__": "__guide__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, str(GUIDE), "exec"), namespace)
    return out.getvalue().splitlines(), namespace


def _line(lines, prefix):
    (line,) = [line for line in lines if line.startswith(prefix)]
    return line[len(prefix) :]


def test_guide_has_one_python_block_per_pattern():
    assert len(_pattern_blocks()) == 5


def test_pattern_1_fan_out_takes_the_slowest_branch_not_the_sum(guide_run):
    lines, _ = guide_run
    summary = next(line for line in lines if line.startswith("Processed "))
    match = re.fullmatch(r"Processed (\d+) items in (\d+\.\d+)s", summary)
    assert match, summary
    assert int(match.group(1)) == 4
    assert 0.45 <= float(match.group(2)) <= 0.65


def test_pattern_2_pipeline_counts_both_stages(guide_run):
    lines, _ = guide_run
    (line,) = [line for line in lines if line.startswith("{'stage1_count'")]
    final = ast.literal_eval(line)
    assert final["stage1_count"] == 3
    assert final["stage2_count"] == 3
    assert final["total_steps"] == 8
    assert final["combined_output"].count("Stage2-") == 3
    assert "Stage1-A: Cleaned: user data" in final["combined_output"]


def test_pattern_3_routes_text_and_image_to_three_analyses_each(guide_run):
    lines, _ = guide_run
    text = ast.literal_eval(_line(lines, "Text: "))
    assert text["content_type"] == "text_content"
    assert text["analyses_performed"] == 3
    assert set(text["results"]) == {"sentiment", "entities", "keywords"}
    image = ast.literal_eval(_line(lines, "Image: "))
    assert image["content_type"] == "image_content"
    assert image["analyses_performed"] == 3
    assert set(image["results"]) == {"objects", "faces", "ocr"}


def test_pattern_4_picks_sequential_for_small_and_parallel_for_large(guide_run):
    lines, namespace = guide_run
    assert _line(lines, "Small: ") == "sequential"
    assert _line(lines, "Large: ") == "parallel"
    small = namespace["small_result"]["final_result"]
    large = namespace["large_result"]["final_result"]
    assert small["total_processed"] == 2
    assert large["total_processed"] == 20
    assert large["results"][0] == "Mapper1 processed: item_0"
    assert large["stats"] == {f"mapper_{i}_items": 5 for i in range(1, 5)}


def test_pattern_5_every_run_ends_via_primary_backup_or_all_failed(guide_run):
    lines, _ = guide_run
    runs = [line for line in lines if line.startswith("Run ")]
    assert len(runs) == 5
    for i, line in enumerate(runs, start=1):
        assert re.fullmatch(
            rf"Run {i}: (completed via primary|completed via backup|failed via all_failed)",
            line,
        ), line
