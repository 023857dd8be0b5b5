"""The README stays true: its variable tables match the settings, and its links resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_environment_tables_match_the_settings_classes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "env_table.py"), "--check"], check=False
    )
    assert result.returncode == 0, "README.md is stale: run scripts/env_table.py --write"


def test_every_relative_link_in_the_docs_resolves() -> None:
    docs = [REPO / "README.md", *REPO.glob("deploy/**/README.md"), *REPO.glob("docs/*.md")]
    missing = []
    for doc in docs:
        for target in re.findall(r"\]\(([^)#]+?)(?:#[^)]*)?\)", doc.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (doc.parent / target).exists():
                missing.append(f"{doc.relative_to(REPO)} -> {target}")
    assert missing == []
