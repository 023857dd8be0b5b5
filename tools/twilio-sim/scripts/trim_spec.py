"""Regenerate the trimmed Calls-only OpenAPI spec the simulator ships with.

Usage (from the repo root):

    .venv/bin/python tools/twilio-sim/scripts/trim_spec.py \
        [--source ../shared/twilio-oai/twilio_api_v2010.json] [--output <trimmed.json>]

It keeps the two Calls paths, every component they `$ref` (followed transitively), the
security scheme and the tags they use, and records the source file's sha256 in `info`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent
DEFAULT_SOURCE = PACKAGE_ROOT.parents[2] / "shared" / "twilio-oai" / "twilio_api_v2010.json"
DEFAULT_OUTPUT = PACKAGE_ROOT / "src" / "yobidashi_twilio_sim" / "spec" / "twilio_calls_v2010.json"
EXPECTED_SHA256 = "99cae87a6bb1725f71363364cbd30282a13140374b2d5f9bdd5bdfa5d4c8a6d7"
CALL_PATHS = (
    "/2010-04-01/Accounts/{AccountSid}/Calls.json",
    "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json",
)
SOURCE_NOTE = {
    "repository": "https://github.com/twilio/twilio-oai",
    "commit": "d50069b44ea8",
    "path": "spec/json/twilio_api_v2010.json",
}


def _refs(node: Any) -> set[str]:
    """Every `$ref` string anywhere below `node`."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.add(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _resolve(document: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"only local refs are supported, got {ref!r}")
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def trim(document: dict[str, Any], source_sha256: str) -> dict[str, Any]:
    """Return a new document holding only what the Calls endpoints need."""
    paths = {path: document["paths"][path] for path in CALL_PATHS}
    # Follow refs transitively: a kept component may itself point at others.
    kept: dict[str, Any] = {}
    pending = sorted(_refs(paths))
    while pending:
        ref = pending.pop()
        if ref in kept:
            continue
        target = _resolve(document, ref)
        kept[ref] = target
        pending.extend(sorted(_refs(target) - kept.keys()))

    components: dict[str, Any] = {}
    for ref in sorted(kept):
        section, name = ref[2:].split("/")[1:3]
        components.setdefault(section, {})[name] = kept[ref]

    security_names = {name for item in document.get("security", []) for name in item}
    for path_item in paths.values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                for item in operation.get("security", []):
                    security_names.update(item)
    schemes = document["components"].get("securitySchemes", {})
    components["securitySchemes"] = {name: schemes[name] for name in sorted(security_names)}

    used_tags = {
        tag
        for path_item in paths.values()
        for operation in path_item.values()
        if isinstance(operation, dict)
        for tag in operation.get("tags", [])
    }
    info = dict(document["info"])
    info["x-yobidashi-trimmed-from"] = {
        **SOURCE_NOTE,
        "sha256": source_sha256,
        "kept_paths": list(CALL_PATHS),
        "generator": "tools/twilio-sim/scripts/trim_spec.py",
    }
    return {
        "openapi": document["openapi"],
        "info": info,
        "servers": document.get("servers", []),
        "security": document.get("security", []),
        "tags": [tag for tag in document.get("tags", []) if tag.get("name") in used_tags],
        "paths": paths,
        "components": components,
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--allow-other-source",
        action="store_true",
        help="accept a source whose sha256 differs from the pinned one",
    )
    args = parser.parse_args(argv)
    raw = args.source.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != EXPECTED_SHA256 and not args.allow_other_source:
        sys.stderr.write(
            f"{args.source}: sha256 {digest} != pinned {EXPECTED_SHA256}; "
            "pass --allow-other-source to trim it anyway\n"
        )
        return 1
    trimmed = trim(json.loads(raw), digest)
    args.output.write_text(render(trimmed), encoding="utf-8")
    sys.stdout.write(f"wrote {args.output} ({len(trimmed['components']['schemas'])} schemas)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
