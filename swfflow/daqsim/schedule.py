"""DAQ schedules: the seed talk's YAML format, validated with file/entry/line in every error.

A schedule is a YAML **list** of entries, exactly as the ePIC testbed's daqsim reads them::

    - state: run
      substate: physics
      span: 0,0,1,0,0          # weeks,days,hours,minutes,seconds

Optional per-entry settings (swfflow extensions):

``stf_interval``  seconds between STFs, a number or ``[low, high]`` (uniform, seeded)
``stf_rate``      STFs per second (alternative to ``stf_interval``)
``stf_size``      bytes per STF: ``2GB``, ``200MiB``, ``4096`` or ``[low, high]``
``new_run``       ``true``: end the current run here and start the next one

STFs are produced only inside a run (state ``run``), by default in every run substate except
``standby`` at the CLI's ``--stf-interval``; ``stf_interval: 0`` switches them off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from swfflow.errors import SwfflowError

SPAN_UNITS_S = (7 * 86400, 86400, 3600, 60, 1)  # weeks, days, hours, minutes, seconds
EXPECTED_FORMAT = (
    "a YAML list of entries like\n"
    "    - state: run\n      substate: physics\n      span: 0,0,0,1,0\n"
    "  (span = weeks,days,hours,minutes,seconds; optional: stf_interval, stf_rate, stf_size, "
    "new_run)"
)

_DATA_FLAVOURS = ("eic", "epic", "daq", "calib")
# reference/testbed-protocol.md §5: readiness substates per state + data-flavour substates
SUBSTATES: dict[str, tuple[str, ...]] = {
    "off": _DATA_FLAVOURS,
    "no_beam": ("not_ready", *_DATA_FLAVOURS),
    "beam": ("not_ready", "ready", "lumi", *_DATA_FLAVOURS),
    "run": ("physics", "standby", "lumi", *_DATA_FLAVOURS),
    "calib": ("not_ready", *_DATA_FLAVOURS),
    "test": _DATA_FLAVOURS,
}
RUN_STATE = "run"
PAUSED_SUBSTATE = "standby"
_KNOWN_KEYS = {"state", "substate", "span", "stf_interval", "stf_rate", "stf_size", "new_run"}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9,
               "GB": 10**9, "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20,
               "GIB": 2**30, "TIB": 2**40}


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false, so ``state: off`` stays the string "off"."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                              re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


class ScheduleError(SwfflowError):
    """A schedule file is malformed."""


Range = tuple[float, float]


@dataclass(frozen=True)
class Entry:
    index: int  # 1-based position in the file
    line: int
    state: str
    substate: str
    span_s: float
    stf_interval: Range | None = None  # None: the simulator's default; (0, 0): no STFs
    stf_size: Range | None = None
    new_run: bool = False

    @property
    def in_run(self) -> bool:
        return self.state == RUN_STATE

    @property
    def paused(self) -> bool:
        return self.in_run and self.substate == PAUSED_SUBSTATE


@dataclass(frozen=True)
class Schedule:
    source: str
    entries: tuple[Entry, ...]

    @property
    def duration_s(self) -> float:
        return sum(entry.span_s for entry in self.entries)


def load_schedule(path: str | Path) -> Schedule:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScheduleError(f"cannot read schedule: {exc.strerror}", where=str(path)) from None
    return parse_schedule(text, str(path))


def parse_schedule(text: str, source: str = "<schedule>") -> Schedule:
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ScheduleError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=where,
                            hint=f"expected {EXPECTED_FORMAT}") from None
    if not isinstance(data, list) or not data:
        kind = "empty" if not data else f"a {type(data).__name__}"
        raise ScheduleError(f"the schedule is {kind}, not a list of entries",
                            where=f"{source}:{root.start_mark.line + 1 if root else 1}",
                            hint=f"expected {EXPECTED_FORMAT}")
    entries = tuple(_entry(raw, index, node.start_mark.line + 1, source)
                    for index, (raw, node) in enumerate(zip(data, root.value), start=1))
    return Schedule(source, entries)


def _entry(raw: Any, index: int, line: int, source: str) -> Entry:
    def fail(what: str) -> ScheduleError:
        return ScheduleError(f"entry {index}: {what}", where=f"{source}:{line}",
                             hint=f"expected {EXPECTED_FORMAT}")

    if not isinstance(raw, dict):
        raise fail(f"expected a mapping with state/substate/span, got {raw!r}")
    unknown = sorted(set(map(str, raw)) - _KNOWN_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}")
    for key in ("state", "substate", "span"):
        if key not in raw:
            raise fail(f"missing '{key}'")
    state, substate = str(raw["state"]), str(raw["substate"])
    if state not in SUBSTATES:
        raise fail(f"unknown state {state!r}; states are: {', '.join(SUBSTATES)}")
    if substate not in SUBSTATES[state]:
        raise fail(f"unknown substate {substate!r} for state {state!r}; "
                   f"allowed: {', '.join(SUBSTATES[state])}")
    try:
        span_s = parse_span(raw["span"])
        interval = _interval(raw)
        size = _range(raw["stf_size"], parse_size) if "stf_size" in raw else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    if interval and interval != (0, 0) and interval[0] <= 0:
        raise fail(f"stf_interval must be > 0 (or exactly 0 for no STFs), got {raw['stf_interval']!r}")
    new_run = raw.get("new_run", False)
    if not isinstance(new_run, bool):
        raise fail(f"new_run must be true or false, got {new_run!r}")
    if state != RUN_STATE and (new_run or (interval and interval != (0, 0)) or size):
        raise fail("STF settings and new_run need a run: use state 'run' for this entry")
    return Entry(index, line, state, substate, span_s, interval, size, new_run)


def parse_span(value: Any) -> float:
    """``weeks,days,hours,minutes,seconds`` (5 non-negative numbers) → seconds."""
    parts = value if isinstance(value, list) else str(value).split(",")
    try:
        numbers = [float(str(part).strip()) for part in parts]
    except ValueError:
        numbers = []
    if len(parts) != 5 or len(numbers) != 5 or any(n < 0 for n in numbers):
        raise ValueError(f"malformed span {value!r}: need 5 non-negative numbers "
                         "weeks,days,hours,minutes,seconds, e.g. 0,0,0,1,30")
    total = sum(n * unit for n, unit in zip(numbers, SPAN_UNITS_S))
    if total <= 0:
        raise ValueError(f"span {value!r} is zero: every entry must last some time")
    return total


def parse_size(value: Any) -> float:
    """Bytes from ``4096``, ``2GB`` (decimal) or ``2GiB`` (binary)."""
    match = _SIZE_RE.match(str(value)) if not isinstance(value, bool) else None
    unit = (match.group(2) or "").upper() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"bad stf_size {value!r}: a byte count such as 4096, 200MB or 2GiB")
    return float(match.group(1)) * _SIZE_UNITS[unit]


def _interval(raw: dict[str, Any]) -> Range | None:
    if "stf_interval" in raw and "stf_rate" in raw:
        raise ValueError("give either stf_interval or stf_rate, not both")
    if "stf_rate" in raw:
        rate = _number(raw["stf_rate"], "stf_rate")
        return (0.0, 0.0) if rate == 0 else (1 / rate, 1 / rate)
    if "stf_interval" in raw:
        return _range(raw["stf_interval"], lambda v: _number(v, "stf_interval"))
    return None


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _range(value: Any, convert) -> Range:
    if isinstance(value, list):
        if len(value) != 2:
            raise ValueError(f"a range is [low, high], got {value!r}")
        low, high = convert(value[0]), convert(value[1])
        if low > high:
            raise ValueError(f"range {value!r} has low > high")
        return low, high
    single = convert(value)
    return single, single
