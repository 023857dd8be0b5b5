"""Render the README's environment-variable tables from the settings classes.

    .venv/bin/python scripts/env_table.py            # print the tables
    .venv/bin/python scripts/env_table.py --write    # replace them in README.md
    .venv/bin/python scripts/env_table.py --check    # exit 1 if README.md is stale

The README is the documentation; the settings classes are the truth. A test runs --check.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from yobidashi_testing.settings_catalog import SECTIONS, env_name

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- env-table:begin -->"
END = "<!-- env-table:end -->"


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value: Any = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if value is None:
        return "–"
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`" if str(value) != "" else '`""`'


def table(cls: type[BaseSettings], parent: type[BaseSettings] | None) -> str:
    inherited = set(parent.model_fields) if parent else set()
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in cls.model_fields.items():
        overridden = (
            parent is not None
            and name in inherited
            and (parent.model_fields[name].default != field.default)
        )
        if (name in inherited and not overridden) or field.exclude:
            continue
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        if "secret" in str(field.annotation).lower():
            meaning = (meaning + " Secret: never logged.").strip()
        rows.append(f"| `{env_name(cls, name)}` | {_default(field)} | {meaning} |")
    return "\n".join(rows)


def render() -> str:
    parts = [BEGIN]
    for title, cls, parent in SECTIONS:
        parts += [f"\n#### {title}\n", table(cls, parent)]
    parts.append("\n" + END)
    return "\n".join(parts)


def main() -> int:
    text = README.read_text()
    rendered = render()
    current = re.search(re.escape(BEGIN) + ".*?" + re.escape(END), text, re.S)
    if "--check" in sys.argv:
        return 0 if current and current.group(0) == rendered else 1
    if "--write" in sys.argv:
        if not current:
            print(f"README.md has no {BEGIN} … {END} block")  # noqa: T201
            return 1
        README.write_text(text.replace(current.group(0), rendered))
        return 0
    print(rendered)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
