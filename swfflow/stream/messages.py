"""Typed, versioned ePIC DAQ messages: parse both testbed generations, emit one schema.

Parsing (:func:`parse_message`) accepts what the BNL streaming testbed sends today and what its
legacy simulator sent (``reference/testbed-protocol.md`` §2, §9): ``run_id`` as string or int,
``total_stf_files`` or ``total_files``, ``size`` or ``size_bytes``, ``ad:<decimal>`` checksums,
naive local timestamps or the compact ``%Y%m%d%H%M%S[%f]`` form, and ``data_ready`` (the old name
of ``stf_ready``). Emitting (:func:`to_body`) always produces schema version
:data:`SCHEMA_VERSION`, documented in ``docs/messages.md``.

Names that end up in file paths, dataset names or shell-free command lines (``filename``,
``run_id``, ``namespace``) are checked against strict whitelists here, once, so every consumer
can rely on them.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from swfflow.checksum import ChecksumError, normalize_adler32
from swfflow.errors import SwfflowError

SCHEMA_VERSION = 1
UNVERSIONED = 0  # schema_version given to messages from the reference testbed (it has none)
EPIC_TOPIC = "/topic/epictopic"

_FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_STF_NAME_RE = re.compile(r"^swf\.(?P<run>[A-Za-z0-9_-]+)\.(?P<seq>\d+)\.stf$")
_MSG_ID_NAMESPACE = uuid.UUID("6f1c1c52-3f5e-4d0b-9a57-2f0b8e5f4c11")
_LEGACY_TIME_FORMATS = {14: "%Y%m%d%H%M%S", 20: "%Y%m%d%H%M%S%f"}
_RENAMED_TYPES = {"data_ready": "stf_ready"}
# bounds the state store can hold (its Integer columns are 32-bit on PostgreSQL, sizes 64-bit):
# a message past them is refused here, not found out by a failing INSERT that is retried forever
MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1
MAX_STATE = 32  # br_runs.daq_state / daq_substate
MAX_TEXT = 4096  # paths and URLs (container, file_url)


class MessageError(SwfflowError):
    """A message body is not a valid ePIC DAQ message."""


class UnknownMessageType(MessageError):
    """A well-formed message of a type swfflow does not handle (e.g. ``tf_file_registered``)."""


# --- field validators -----------------------------------------------------------------------

def validate_filename(name: object) -> str:
    """A bare file name from the whitelist ``[A-Za-z0-9][A-Za-z0-9._+-]*``; nothing else.

    Rejects path separators, ``..``, whitespace, shell metacharacters and control characters:
    the bridge builds paths and job arguments from this name.
    """
    if not isinstance(name, str) or not _FILENAME_RE.match(name) or ".." in name:
        raise ValueError(
            f"unsafe or invalid file name {name!r}: a bare name of letters, digits and . _ + - "
            "(no path separators, no '..', no spaces or shell characters, at most 255 characters)"
        )
    return name


def _run_id(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"run_id must be a string or an integer, not {value!r}")
    text = str(value).strip()
    if not _RUN_ID_RE.match(text):
        raise ValueError(f"invalid run_id {value!r}: letters, digits and . _ - only")
    return text


def _namespace(value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, str) or not _NAMESPACE_RE.match(value):
        raise ValueError(f"invalid namespace {value!r}: letters, digits and . _ @ - only")
    return value


def _timestamp(value: object) -> object:
    """ISO 8601 (with or without zone), compact legacy digits, or epoch seconds → aware UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str, datetime)):
        raise ValueError(f"not a time: {_shorten(value)}")
    # out-of-range epochs and years raise OverflowError or OSError, not ValueError: all of them
    # are one "not a time" here (a message must never take the bridge down: issue 15)
    try:
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, tz=timezone.utc)
        text = value.strip()
        legacy = _LEGACY_TIME_FORMATS.get(len(text))
        if legacy and text.isdigit():
            parsed = datetime.strptime(text, legacy)
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # naive times are the testbed's local wall clock (datetime.now().isoformat())
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"not a time: {_shorten(value)} (expected ISO 8601 such as "
                         "2026-03-02T14:05:07+00:00, or epoch seconds)") from None


def _plain_text(limit: int):
    """A string of at most ``limit`` characters without control characters (it is stored, and
    shown in logs and status)."""
    def check(value: object) -> object:
        if value is None:
            return None
        # isprintable: no control or format characters, no lone surrogates (JSON "\ud800")
        if not isinstance(value, str) or len(value) > limit or not value.isprintable():
            raise ValueError(f"{_shorten(value)} is not a plain string of at most {limit} "
                             "characters (no control or format characters)")
        return value
    return check


def _shorten(value: object, limit: int = 80) -> str:
    """A printable, bounded rendering of any input, for error messages."""
    text = repr(value) if not isinstance(value, (int, float)) or isinstance(value, bool) \
        else _int_text(value)
    return text if len(text) <= limit else text[:limit] + f"…({len(text)} chars)"


def _int_text(value: float) -> str:
    try:
        return repr(value)
    except ValueError:  # an int too long to print (Python's int_max_str_digits)
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"


def _checksum(value: object) -> object:
    try:
        return normalize_adler32(value)  # type: ignore[arg-type]
    except ChecksumError as exc:
        raise ValueError(exc.what) from None


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


State = Annotated[str | None, BeforeValidator(_plain_text(MAX_STATE))]
PathText = Annotated[str | None, BeforeValidator(_plain_text(MAX_TEXT))]
RunId = Annotated[str, BeforeValidator(_run_id)]
MsgId = Annotated[str, BeforeValidator(_plain_text(64))]  # br_messages.msg_id
Namespace = Annotated[str | None, BeforeValidator(_namespace)]
Timestamp = Annotated[datetime | None, BeforeValidator(_timestamp)]
FileName = Annotated[str, BeforeValidator(validate_filename)]
Adler32 = Annotated[str | None, BeforeValidator(_checksum)]


def stf_filename(run_id: str | int, sequence: int) -> str:
    """The STF file name of the testbed: ``swf.<run>.<seq:06d>.stf``."""
    return validate_filename(f"swf.{_run_id(run_id)}.{sequence:06d}.stf")


def run_dataset_name(run_id: str | int) -> str:
    """The run's raw-data dataset name (testbed default): ``swf.<run>.run``."""
    return f"swf.{_run_id(run_id)}.run"


# --- models -------------------------------------------------------------------------------

class Envelope(BaseModel):
    """Fields every message carries."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    schema_version: int = SCHEMA_VERSION
    msg_id: MsgId = Field(default_factory=lambda: uuid.uuid4().hex)
    namespace: Namespace = None
    sender: str | None = None
    run_id: RunId
    timestamp: Timestamp = Field(
        default_factory=_utc_now, validation_alias=AliasChoices("timestamp", "ts")
    )
    execution_id: str | None = None
    simulation_tick: float | None = None
    req_id: int | str | None = None


class RunImminent(Envelope):
    msg_type: Literal["run_imminent"] = "run_imminent"
    state: State = "beam"
    substate: State = "not_ready"
    dataset: str | None = None
    container: PathText = None
    run_conditions: dict[str, Any] = Field(default_factory=dict)


class StartRun(Envelope):
    msg_type: Literal["start_run"] = "start_run"
    state: State = "run"
    substate: State = "physics"


class PauseRun(Envelope):
    msg_type: Literal["pause_run"] = "pause_run"
    state: State = "run"
    substate: State = "standby"
    reason: str | None = None


class ResumeRun(Envelope):
    msg_type: Literal["resume_run"] = "resume_run"
    state: State = "run"
    substate: State = "physics"


class _FileFields(BaseModel):
    """Per-file fields shared by stf_gen and the per-file stf_ready."""

    sequence: int | None = Field(default=None, ge=0, le=MAX_INT32)
    state: State = None
    substate: State = None
    size_bytes: int | None = Field(
        default=None, ge=0, le=MAX_INT64, validation_alias=AliasChoices("size_bytes", "size")
    )
    checksum: Adler32 = None
    file_url: PathText = None
    start: Timestamp = None
    end: Timestamp = None

    @model_validator(mode="after")
    def _sequence_from_filename(self):
        filename = getattr(self, "filename", None)
        if self.sequence is None and filename:
            match = _STF_NAME_RE.match(filename)
            if match and int(match.group("seq")) <= MAX_INT32:
                # legacy stf_gen has no sequence field (and counts from 0)
                object.__setattr__(self, "sequence", int(match.group("seq")))
        return self


class StfGen(_FileFields, Envelope):
    msg_type: Literal["stf_gen"] = "stf_gen"
    filename: FileName


class EndRun(Envelope):
    msg_type: Literal["end_run"] = "end_run"
    # the runner sends total_stf_files, the data agents read total_files: accept both
    total_stf_files: int | None = Field(
        default=None, ge=0, le=MAX_INT32,
        validation_alias=AliasChoices("total_stf_files", "total_files")
    )


class StfReady(_FileFields, Envelope):
    """Per-file (``filename`` set) or per-run "dataset non-empty" (no filename)."""

    msg_type: Literal["stf_ready"] = "stf_ready"
    filename: FileName | None = None
    processed_by: str | None = None

    @property
    def per_file(self) -> bool:
        return self.filename is not None


Message = Annotated[
    Union[RunImminent, StartRun, PauseRun, ResumeRun, StfGen, EndRun, StfReady],
    Field(discriminator="msg_type"),
]
MESSAGE_TYPES: dict[str, type[Envelope]] = {
    model.model_fields["msg_type"].default: model
    for model in (RunImminent, StartRun, PauseRun, ResumeRun, StfGen, EndRun, StfReady)
}
_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


# --- parsing and emitting --------------------------------------------------------------------

def parse_message(body: bytes | str | dict[str, Any]) -> Message:
    """Validate a message body from either testbed generation (or swfflow) into a model.

    Raises :class:`MessageError` naming the offending field, or :class:`UnknownMessageType`
    for a well-formed message of a type swfflow does not model — and nothing else, whatever
    the body: a consumer dead-letters a MessageError and goes on, so an exception of another
    kind (a number out of range, JSON nested too deep) would be a crash, and through a broker
    one the message redelivered at every restart would repeat (issue 15).
    """
    try:
        return _parse(body)
    except MessageError:
        raise
    except Exception as exc:  # noqa: BLE001 - a message must not be able to raise anything else
        raise MessageError(f"message cannot be parsed: {type(exc).__name__}: "
                           f"{_shorten(str(exc), 200)}",
                           hint="see docs/messages.md for the fields of each message type") \
            from None


def _parse(body: bytes | str | dict[str, Any]) -> Message:
    data = _decode(body)
    msg_type = data.get("msg_type")
    if not isinstance(msg_type, str):
        raise MessageError(
            "message has no 'msg_type' field",
            where=_where(data),
            hint=f"expected one of: {', '.join(MESSAGE_TYPES)}",
        )
    data = dict(data)
    data["msg_type"] = _RENAMED_TYPES.get(msg_type, msg_type)
    if data["msg_type"] not in MESSAGE_TYPES:
        raise UnknownMessageType(
            f"unknown msg_type {_shorten(msg_type)}",
            where=_where(data),
            hint=f"swfflow handles: {', '.join(MESSAGE_TYPES)} (and data_ready)",
        )
    data.setdefault("schema_version", UNVERSIONED)
    for key in ("timestamp", "ts"):  # an empty time is no time: the time of parsing
        if key in data and (data[key] is None or data[key] == ""):
            del data[key]
    if "msg_id" not in data:
        # the testbed sends no id: derive a stable one, so a redelivered copy keeps its identity
        canonical = json.dumps(body if isinstance(body, dict) else data, sort_keys=True,
                               default=str)
        data["msg_id"] = uuid.uuid5(_MSG_ID_NAMESPACE, canonical).hex
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise _message_error(exc, data) from None


def to_body(message: Envelope) -> dict[str, Any]:
    """The wire form (schema :data:`SCHEMA_VERSION`): JSON-ready dict, None fields left out."""
    body = message.model_dump(mode="json", exclude_none=True)
    body["schema_version"] = SCHEMA_VERSION
    if isinstance(message, EndRun) and message.total_stf_files is not None:
        body["total_files"] = message.total_stf_files  # what the testbed's data agents read
    return body


def to_json(message: Envelope) -> str:
    return json.dumps(to_body(message), separators=(",", ":"))


def _decode(body: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"message body is not UTF-8 ({exc.reason} at byte {exc.start})")
    hint = "the body must be one JSON object such as {\"msg_type\": \"start_run\", ...}"
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MessageError(
            f"message body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            hint=hint) from None
    except (ValueError, RecursionError) as exc:  # a number too long, nesting too deep
        raise MessageError(f"message body is not usable JSON: {_shorten(str(exc), 120)}",
                           hint=hint) from None
    if not isinstance(data, dict):
        raise MessageError(f"message body must be a JSON object, not {type(data).__name__}")
    return data


def _where(data: dict[str, Any]) -> str:
    label = lambda v: v if isinstance(v, str) and len(v) <= 64 and v.isprintable() \
        else _shorten(v, 64)
    parts = [f"{key}={label(data[key])}" for key in ("msg_type", "run_id", "msg_id")
             if key in data]
    return "message " + " ".join(parts) if parts else "message"


def _message_error(exc: ValidationError, data: dict[str, Any]) -> MessageError:
    first = exc.errors()[0]
    location = [str(part) for part in first["loc"] if str(part) != data["msg_type"]]
    field = ".".join(location) or "(body)"
    detail = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        detail = "required field is missing"
    more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    return MessageError(
        f"{data['msg_type']} message: field '{field}': {detail}{more}",
        where=_where(data),
        hint="see docs/messages.md for the fields of each message type",
    )
