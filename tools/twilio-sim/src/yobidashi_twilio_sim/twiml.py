"""TwiML parsing: XML text to a list of verb objects the interpreter runs.

Twilio parses the whole document before running any of it, so a malformed document or an
unknown verb fails up front (error 12100) and nothing in it is played.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

DOCUMENT_PARSE_FAILURE = 12100
# Real TwiML verbs the simulator does not implement; they fail like an unknown verb would.
UNSUPPORTED_VERBS = frozenset(
    {
        "Connect",
        "Dial",
        "Echo",
        "Enqueue",
        "Leave",
        "Pay",
        "Prompt",
        "Queue",
        "Record",
        "Refer",
        "Reject",
        "Sms",
        "Start",
        "Stop",
    }
)


class TwimlError(Exception):
    """The document cannot be run; `code` is the Twilio error the debugger would log."""

    def __init__(self, message: str, code: int = DOCUMENT_PARSE_FAILURE) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Say:
    text: str
    voice: str = "man"
    language: str = "en-US"
    loop: int = 1


@dataclass(frozen=True)
class Play:
    url: str
    loop: int = 1
    digits: str = ""


@dataclass(frozen=True)
class Pause:
    length: int = 1


Prompt = Say | Play | Pause


@dataclass(frozen=True)
class Gather:
    action: str | None = None
    method: str = "POST"
    timeout: int = 5
    finish_on_key: str = "#"
    num_digits: int | None = None
    action_on_empty_result: bool = False
    input: str = "dtmf"
    prompts: tuple[Prompt, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Redirect:
    url: str
    method: str = "POST"


@dataclass(frozen=True)
class Hangup:
    pass


Verb = Say | Play | Pause | Gather | Redirect | Hangup


def _int_attr(element: ET.Element, name: str, default: int, minimum: int = 0) -> int:
    raw = element.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError as exc:
        raise TwimlError(f"<{element.tag}> {name}={raw!r} is not an integer") from exc
    if value < minimum:
        raise TwimlError(f"<{element.tag}> {name}={raw!r} is below {minimum}")
    return value


def _method_attr(element: ET.Element) -> str:
    method = (element.get("method") or "POST").strip().upper()
    if method not in ("GET", "POST"):
        raise TwimlError(f"<{element.tag}> method={method!r} must be GET or POST")
    return method


def _text(element: ET.Element) -> str:
    # SSML children (<break>, <emphasis>...) are allowed in <Say>: keep only their text.
    return "".join(element.itertext()).strip()


def _parse_prompt(element: ET.Element) -> Prompt:
    if element.tag == "Say":
        return Say(
            text=_text(element),
            voice=element.get("voice") or "man",
            language=element.get("language") or "en-US",
            loop=_int_attr(element, "loop", 1),
        )
    if element.tag == "Play":
        return Play(
            url=_text(element),
            loop=_int_attr(element, "loop", 1),
            digits=element.get("digits") or "",
        )
    if element.tag == "Pause":
        return Pause(length=_int_attr(element, "length", 1))
    raise TwimlError(f"<{element.tag}> is not allowed here")


def _parse_gather(element: ET.Element) -> Gather:
    finish_on_key = element.get("finishOnKey", "#")
    if len(finish_on_key) > 1 or (finish_on_key and finish_on_key not in "0123456789*#"):
        raise TwimlError(f"<Gather> finishOnKey={finish_on_key!r} is not a single key")
    num_digits_raw = element.get("numDigits")
    prompts: list[Prompt] = []
    for child in element:
        if child.tag not in ("Say", "Play", "Pause"):
            raise TwimlError(f"<{child.tag}> cannot be nested in <Gather>")
        prompts.append(_parse_prompt(child))
    return Gather(
        action=(element.get("action") or "").strip() or None,
        method=_method_attr(element),
        timeout=_int_attr(element, "timeout", 5),
        finish_on_key=finish_on_key,
        num_digits=None if num_digits_raw is None else _int_attr(element, "numDigits", 1, 1),
        action_on_empty_result=(element.get("actionOnEmptyResult") or "").lower() == "true",
        input=element.get("input") or "dtmf",
        prompts=tuple(prompts),
    )


def _parse_verb(element: ET.Element) -> Verb:
    tag = element.tag
    if tag in ("Say", "Play", "Pause"):
        return _parse_prompt(element)
    if tag == "Gather":
        return _parse_gather(element)
    if tag == "Redirect":
        url = _text(element)
        if not url:
            raise TwimlError("<Redirect> needs a URL")
        return Redirect(url=url, method=_method_attr(element))
    if tag == "Hangup":
        return Hangup()
    if tag in UNSUPPORTED_VERBS:
        raise TwimlError(f"<{tag}> is valid TwiML but not supported by the simulator")
    raise TwimlError(f"<{tag}> is not a TwiML verb")


def parse(document: str | bytes) -> list[Verb]:
    """Parse a TwiML document; raise `TwimlError` exactly when Twilio would refuse it."""
    try:
        root = ET.fromstring(document.strip())  # noqa: S314 - TwiML from the test's own server
    except ET.ParseError as exc:
        raise TwimlError(f"document is not well-formed XML: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(f"root element is <{root.tag}>, not <Response>")
    return [_parse_verb(child) for child in root]
