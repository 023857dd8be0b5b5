"""Which scenario each destination number plays, one per call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from yobidashi_twilio_sim.models import Scenario

DEFAULT_KEY = "default"
_SCENARIO_SPEC: TypeAdapter[Scenario | list[Scenario]] = TypeAdapter(Scenario | list[Scenario])
_SCENARIO_MAP: TypeAdapter[dict[str, Scenario | list[Scenario]]] = TypeAdapter(
    dict[str, Scenario | list[Scenario]]
)


def _load_json(value: str) -> Any:
    """Settings accept inline JSON or a path to a JSON file."""
    text = value.strip()
    if not text.startswith(("{", "[")):
        text = Path(text).read_text(encoding="utf-8")
    return json.loads(text)


def parse_scenario_spec(data: Any) -> list[Scenario]:
    spec = _SCENARIO_SPEC.validate_python(data)
    if isinstance(spec, Scenario):
        return [spec]
    if not spec:
        raise ValueError("a scenario list must not be empty")
    return spec


class ScenarioBook:
    """Per-number scenario lists with a cursor each; the last scenario of a list repeats."""

    def __init__(self, scenarios: str | None = None, default_scenario: str | None = None) -> None:
        self._startup_scenarios = scenarios
        self._startup_default = default_scenario
        self._by_number: dict[str, list[Scenario]] = {}
        self._cursor: dict[str, int] = {}
        self._default: list[Scenario] = [Scenario()]
        self.restore()

    def restore(self) -> None:
        """Back to the startup configuration, with every cursor rewound."""
        self._by_number.clear()
        self._cursor.clear()
        self._default = [Scenario()]
        if self._startup_scenarios:
            for number, spec in _SCENARIO_MAP.validate_python(
                _load_json(self._startup_scenarios)
            ).items():
                self.set(number, spec)
        if self._startup_default:
            self.set(DEFAULT_KEY, parse_scenario_spec(_load_json(self._startup_default)))

    def set(self, number: str, spec: Scenario | list[Scenario]) -> None:
        items = [spec] if isinstance(spec, Scenario) else list(spec)
        if not items:
            raise ValueError("a scenario list must not be empty")
        if number == DEFAULT_KEY:
            self._default = items
        else:
            self._by_number[number] = items
        self._cursor.pop(number, None)

    def remove(self, number: str) -> bool:
        self._cursor.pop(number, None)
        return self._by_number.pop(number, None) is not None

    def rewind(self) -> None:
        self._cursor.clear()

    def next_for(self, number: str) -> Scenario:
        """The scenario for the next call to `number`, advancing its cursor."""
        # The cursor is per number even for the default list, so each unknown number walks it.
        items = self._by_number.get(number, self._default)
        index = self._cursor.get(number, 0)
        self._cursor[number] = index + 1
        return items[min(index, len(items) - 1)]

    def snapshot(self) -> dict[str, Any]:
        return {
            DEFAULT_KEY: [s.model_dump() for s in self._default],
            "numbers": {
                number: {
                    "scenarios": [s.model_dump() for s in items],
                    "calls_so_far": self._cursor.get(number, 0),
                }
                for number, items in self._by_number.items()
            },
        }

    def numbers(self) -> list[str]:
        return list(self._by_number)
