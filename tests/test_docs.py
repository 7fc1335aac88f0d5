"""The docs pages' tables are written from the data tables: committed pages must match them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from deploy import docs
from deploy import kernel_support as ks

ROOT = Path(__file__).resolve().parent.parent


def test_committed_pages_equal_what_the_tables_give():
    assert docs.stale_pages(ROOT) == [], "run: python -m deploy.docs"


def test_check_command_exits_0_on_the_committed_pages():
    p = subprocess.run([sys.executable, "-m", "deploy.docs", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_a_changed_cell_makes_the_page_stale_and_the_writer_fixes_it(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    for page in docs.PAGES:
        shutil.copy(ROOT / page, tmp_path / page)
    hopper = ks.MATRIX["0.24-0.27"]["9.0"]
    changed = {**ks.MATRIX, "0.24-0.27": {**ks.MATRIX["0.24-0.27"], "9.0": replace(hopper, moe_backend=ks.MARLIN)}}
    monkeypatch.setattr(ks, "MATRIX", changed)
    assert docs.stale_pages(tmp_path) == ["docs/kernel-support.md"]
    page = tmp_path / "docs/kernel-support.md"
    page.write_text(docs.render_page(page.read_text(), docs.PAGES["docs/kernel-support.md"]))
    assert docs.stale_pages(tmp_path) == []
    assert "| 0.24.0 – 0.27.1 | no | Marlin + Triton | Marlin + FA3 |" in page.read_text()


def test_a_page_without_its_block_is_an_error_naming_the_block():
    with pytest.raises(ValueError, match="docs/x.md: no '<!-- BEGIN generated: summary"):
        docs.render_page("# no blocks here\n", {"summary": docs.kernel_summary}, "docs/x.md")


def test_summary_has_one_line_per_release_and_one_column_per_group():
    lines = docs.kernel_summary().splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| vLLM")]
    assert len(rows) == len(ks.RELEASES) + 2  # + "< first" and "> newest"
    assert all(row.count("|") == len(ks.GROUPS) + 2 for row in rows)
