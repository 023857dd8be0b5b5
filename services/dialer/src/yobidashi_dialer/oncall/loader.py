"""Read the on-call YAML, validate it, and explain every problem by line and field."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from yobidashi_common.phone import mask
from yobidashi_dialer.oncall.config import OnCallConfig

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {self.field or '(top level)'}: {self.message}"


class ConfigError(Exception):
    """The on-call config is unusable; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(str(p) for p in self.problems))

    def report(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def _line_of(root: yaml.Node | None, path: Path_) -> int | None:
    """The line of the YAML node at ``path``, or of its deepest existing ancestor."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _field(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def load_text(text: str, source: str = "<config>") -> OnCallConfig:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(source, [Problem(line, "", f"not valid YAML: {exc}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem(1, "", "the file must be a mapping at the top")])
    try:
        config = OnCallConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            path: Path_ = tuple(p for p in err["loc"] if not isinstance(p, str) or "[" not in p)
            message = err["msg"].removeprefix("Value error, ")
            problems.append(Problem(_line_of(root, path), _field(path), message))
        raise ConfigError(source, problems) from None
    problems = [
        Problem(_line_of(root, path), _field(path), message)
        for path, message in _reference_problems(config)
    ]
    if problems:
        raise ConfigError(source, problems)
    return config


def load(path: str | Path) -> OnCallConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [Problem(None, "", f"cannot read: {exc}")]) from None
    return load_text(text, str(path))


def _reference_problems(config: OnCallConfig) -> Iterator[tuple[Path_, str]]:
    """Ids must be unique, and everything referred to must exist."""
    for kind, ids in (
        ("contacts", [c.id for c in config.contacts]),
        ("schedules", [s.id for s in config.schedules]),
        ("policies", [p.id for p in config.policies]),
        ("routes", [r.id for r in config.routes]),
    ):
        seen: set[str] = set()
        for i, item_id in enumerate(ids):
            if item_id in seen:
                yield (kind, i, "id"), f"{item_id!r} is used twice"
            seen.add(item_id)
    # A number is one person's: shared, a page to it would be counted, bundled and
    # acknowledged as whichever contact comes first, and could ring it twice at once.
    owners: dict[str, str] = {}
    for i, each in enumerate(config.contacts):
        for j, number in enumerate(each.phones):
            owner = owners.setdefault(number, each.id)
            if owner != each.id:
                yield (
                    ("contacts", i, "phones", j),
                    f"{mask(number)} is also the number of {owner!r}; "
                    "a number belongs to one contact",
                )
    contacts = {c.id for c in config.contacts}
    schedules = {s.id for s in config.schedules}
    policies = {p.id for p in config.policies}

    def contact(path: Path_, value: str | None) -> Iterator[tuple[Path_, str]]:
        if value is not None and value not in contacts:
            yield path, f"unknown contact {value!r}"

    for si, schedule in enumerate(config.schedules):
        for li, layer in enumerate(schedule.layers):
            for mi, member in enumerate(layer.rotation.members):
                yield from contact(
                    ("schedules", si, "layers", li, "rotation", "members", mi), member
                )
        for oi, override in enumerate(schedule.overrides):
            yield from contact(("schedules", si, "overrides", oi, "contact"), override.contact)
            yield from contact(("schedules", si, "overrides", oi, "replaces"), override.replaces)
    for pi, policy in enumerate(config.policies):
        for st, step in enumerate(policy.steps):
            for ti, target in enumerate(step.targets):
                here: Path_ = ("policies", pi, "steps", st, "targets", ti)
                yield from contact((*here, "contact"), target.contact)
                if target.schedule is not None and target.schedule not in schedules:
                    yield (*here, "schedule"), f"unknown schedule {target.schedule!r}"
        yield from contact(("policies", pi, "fallback"), policy.fallback)
    for ri, route in enumerate(config.routes):
        if route.policy not in policies:
            yield ("routes", ri, "policy"), f"unknown policy {route.policy!r}"
