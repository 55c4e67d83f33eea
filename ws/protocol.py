"""The realtime protocol, version 1: one schema per message type.

Every message is one JSON object in one text frame. The envelope is flat:
``type`` names the schema, ``id`` is the sender's message id and ``v`` the
protocol version (1); server messages add ``seq``, the position in the
receiver's history (see ``docs/protocol.md``). The body fields sit next to
the envelope fields.

Client messages are refused by :func:`decode_request` with a stable code
when they are malformed; the server answers each request with ``ack`` or
``error``. Errors become ``error`` messages and close codes here and only
here (:func:`error_message`, :func:`close_code`).

Errors of the edge itself, under :class:`dispatch.errors.HomecareError`::

    ValidationError        bad_utf8 bad_json not_object unknown_type
                           missing_field wrong_type out_of_range
                           unknown_field too_deep too_large binary_frame
                           unsupported_version (codes, not classes)
    ConflictError
    ├── DuplicateMessageError  the message id was seen on this connection
    └── OutOfPlaceError        a message the session does not expect now
    LimitError
    ├── RateLimitedError       the connection sends faster than allowed
    ├── TooManyConnectionsError  the token holds too many connections
    ├── IdleTimeoutError       nothing received for too long
    └── TokenExpiredError      the token expired while connected
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

import msgspec

from db.live import Duty
from dispatch.domain import Priority
from dispatch.errors import (
    AuthError,
    ConflictError,
    HomecareError,
    UnavailableError,
    ValidationError,
)
from dispatch.schemas import OrderView

__all__ = [
    "VERSION",
    "Accept",
    "Ack",
    "Alarm",
    "AlarmKind",
    "AlertMessage",
    "AssignedOrder",
    "CaregiverState",
    "Caregivers",
    "CheckIn",
    "Complete",
    "ConsoleRequest",
    "ConsoleServerMessage",
    "Decline",
    "Deliver",
    "DuplicateMessageError",
    "DutyReport",
    "ElderContact",
    "EnRoute",
    "Error",
    "EventBody",
    "GiveBack",
    "Hello",
    "IdleTimeoutError",
    "IntakeOrder",
    "IntakeRequest",
    "IntakeServerMessage",
    "LimitError",
    "Location",
    "NoShow",
    "Offer",
    "OfferWithdrawn",
    "OrderEventMessage",
    "OrderUpdate",
    "OutOfPlaceError",
    "PhoneRequest",
    "PhoneServerMessage",
    "PhoneSnapshot",
    "Plan",
    "PlannedVisit",
    "RateLimitedError",
    "ServerMessage",
    "ServiceRecord",
    "Snapshot",
    "Sos",
    "Start",
    "TaskDone",
    "TokenExpiredError",
    "TooManyConnectionsError",
    "Welcome",
    "close_code",
    "decode_request",
    "encode",
    "error_message",
    "literal_type",
    "message_id_of",
    "with_seq",
]

#: The protocol version every envelope carries.
VERSION = 1

MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
OrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Text = Annotated[str, msgspec.Meta(max_length=2000)]
Lat = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Lon = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
Seq = Annotated[int, msgspec.Meta(ge=0)]
Version = Annotated[int, msgspec.Meta(ge=1)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


# -- errors of the edge ------------------------------------------------------


class DuplicateMessageError(ConflictError):
    """A message id was used before on this connection; nothing was done."""

    code = "duplicate_id"


class OutOfPlaceError(ConflictError):
    """A message the session does not expect now (before hello, twice, ...)."""

    code = "out_of_place"


class LimitError(HomecareError):
    """A limit of the edge was reached."""

    code = "limit"


class RateLimitedError(LimitError):
    """The connection sends faster than its allowed rate."""

    code = "rate_limited"


class TooManyConnectionsError(LimitError):
    """The token already holds as many connections as allowed."""

    code = "too_many_connections"


class IdleTimeoutError(LimitError):
    """Nothing arrived on the connection for longer than the idle timeout."""

    code = "idle_timeout"


class TokenExpiredError(LimitError):
    """The token the connection was opened with has expired."""

    code = "token_expired"


# The one place where errors that end a connection become close codes
# (RFC 6455 section 7.4.2 leaves 4000-4999 to applications).
_CLOSE: tuple[tuple[type[HomecareError], int], ...] = (
    (TokenExpiredError, 4401),
    (AuthError, 4401),
    (TooManyConnectionsError, 4429),
    (RateLimitedError, 4429),
    (IdleTimeoutError, 4408),
    (UnavailableError, 1013),
)


def close_code(error: HomecareError) -> int:
    """The websocket close code for an error that ends the connection."""
    for kind, code in _CLOSE:
        if isinstance(error, kind):
            return code
    return 1011


# -- shared bodies -------------------------------------------------------------


class TaskOutcome(StrEnum):
    """How one task of a visit went."""

    DONE = "done"
    PARTLY = "partly"
    NOT_DONE = "not_done"


class TaskDone(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One task of the service record and its outcome."""

    task: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    outcome: TaskOutcome


class ServiceRecord(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What was done at a visit or delivery.

    ``vitals`` are readings by name (``systolic_mmhg``, ``glucose_mmol_l``,
    ...) where the service measures them.
    """

    tasks: Annotated[list[TaskDone], msgspec.Meta(max_length=50)] = []
    notes: Text = ""
    vitals: Annotated[dict[str, float], msgspec.Meta(max_length=20)] = {}


class ElderContact(msgspec.Struct, frozen=True):
    """How to reach the elder; sent only to the provider serving the order."""

    elder_id: str
    name: str
    phone: str
    address: str
    health_notes: str


class AssignedOrder(msgspec.Struct, frozen=True):
    """An order as its provider sees it (contact only while assigned)."""

    order_id: str
    version: int
    status: str
    service_code: str
    priority: str
    earliest: datetime
    latest: datetime
    duration_min: int
    lat: float
    lon: float
    notes: str
    offer_expires_at: datetime | None = None
    elder: ElderContact | None = None


class PlannedVisit(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One visit of a caregiver's plan."""

    order_id: str
    planned_arrival: AwareTime
    planned_start: AwareTime
    planned_end: AwareTime


class PhoneSnapshot(msgspec.Struct, frozen=True):
    """Everything a phone needs to start over: offers, orders and plan."""

    offers: list[AssignedOrder]
    orders: list[AssignedOrder]
    plan: list[PlannedVisit] | None = None
    plan_computed_at: datetime | None = None


class CaregiverState(msgspec.Struct, frozen=True):
    """A caregiver's last location and duty, for the console map."""

    caregiver_id: str
    lat: float
    lon: float
    duty: str | None


class EventBody(msgspec.Struct, frozen=True):
    """One committed order event, as the console sees it."""

    event_id: int
    order_id: str
    seq: int
    trigger: str
    from_status: str | None
    to_status: str
    actor_role: str
    actor_id: str
    at: datetime
    reason: str
    region_id: str


class AlarmKind(StrEnum):
    """What an elder's device reports."""

    SOS_BUTTON = "sos_button"
    FALL = "fall"
    ABNORMAL_VITALS = "abnormal_vitals"
    INACTIVITY = "inactivity"
    DEVICE_SILENT = "device_silent"
    BATTERY_LOW = "battery_low"


# -- client messages -----------------------------------------------------------


class _Request(
    msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True
):
    id: MessageId
    v: int = VERSION


class Hello(_Request, tag="hello"):
    """Opens a phone's session; ``last_seq`` resumes after that message."""

    last_seq: Seq | None = None
    app: Annotated[str, msgspec.Meta(max_length=64)] = ""


class Location(_Request, tag="location"):
    """Where the caregiver is now; stored in batches."""

    lat: Lat
    lon: Lon
    accuracy_m: Annotated[float, msgspec.Meta(ge=0.0, le=100_000.0)] | None = None


class DutyReport(_Request, tag="duty"):
    """On or off shift, or on a break."""

    duty: Duty


class Accept(_Request, tag="accept"):
    """Take the offered order."""

    order_id: OrderId
    version: Version | None = None


class Decline(_Request, tag="decline"):
    """Refuse the offered order, with a reason."""

    order_id: OrderId
    reason: Reason
    version: Version | None = None


class GiveBack(_Request, tag="give_back"):
    """Return an accepted order before arrival, with a reason."""

    order_id: OrderId
    reason: Reason
    version: Version | None = None


class EnRoute(_Request, tag="en_route"):
    """On the way to the elder (vendors: out for delivery)."""

    order_id: OrderId
    version: Version | None = None


class CheckIn(_Request, tag="check_in"):
    """At the elder's door, with GPS; ``flagged`` asks to be let in anyway."""

    order_id: OrderId
    lat: Lat
    lon: Lon
    flagged: bool = False
    version: Version | None = None


class Start(_Request, tag="start"):
    """The service begins."""

    order_id: OrderId
    version: Version | None = None


class Complete(_Request, tag="complete"):
    """The service is done; carries the service record."""

    order_id: OrderId
    record: ServiceRecord
    version: Version | None = None


class Deliver(_Request, tag="deliver"):
    """A vendor's delivery is done; carries the record."""

    order_id: OrderId
    record: ServiceRecord
    version: Version | None = None


class NoShow(_Request, tag="no_show"):
    """Nobody answered the door, with a reason."""

    order_id: OrderId
    reason: Reason
    version: Version | None = None


class Sos(_Request, tag="sos"):
    """The caregiver is in danger; operators are alerted at once."""

    lat: Lat | None = None
    lon: Lon | None = None
    message: Annotated[str, msgspec.Meta(max_length=500)] = ""


PhoneRequest = (
    Hello
    | Location
    | DutyReport
    | Accept
    | Decline
    | GiveBack
    | EnRoute
    | CheckIn
    | Start
    | Complete
    | Deliver
    | NoShow
    | Sos
)


class IntakeOrder(_Request, tag="order"):
    """Book an order; ``key`` is the sender's idempotency key."""

    key: Key
    elder_id: OrderId
    service_code: OrderId
    earliest: AwareTime
    latest: AwareTime
    priority: Priority = Priority.ROUTINE
    notes: Text = ""
    duration_min: Annotated[int, msgspec.Meta(ge=1, le=1440)] | None = None


class Alarm(_Request, tag="alarm"):
    """A device alarm raised at ``at``; becomes an order by the alarm rules."""

    key: Key
    elder_id: OrderId
    kind: AlarmKind
    at: AwareTime
    readings: Annotated[dict[str, float], msgspec.Meta(max_length=20)] = {}


IntakeRequest = IntakeOrder | Alarm

#: The console feed takes no requests; its resume point is a query parameter.
ConsoleRequest = Hello


# -- server messages -----------------------------------------------------------


class _Server(msgspec.Struct, tag_field="type", kw_only=True):
    id: str
    seq: int = -1
    v: int = VERSION


class Welcome(_Server, tag="welcome"):
    """Answer to hello: resumed, or a fresh snapshot (flagged if history is gone).

    ``seq`` is the position the phone is at after this message; ``re`` is
    the hello's id (none when the server starts over on its own).
    """

    re: str | None
    resumed: bool
    history_lost: bool
    snapshot: PhoneSnapshot | None
    token_expires_at: datetime


class Offer(_Server, tag="offer"):
    """An order offered to this provider until ``expires_at``."""

    order_id: str
    version: int
    service_code: str
    priority: str
    earliest: datetime
    latest: datetime
    duration_min: int
    lat: float
    lon: float
    notes: str
    expires_at: datetime


class OfferWithdrawn(_Server, tag="offer_withdrawn"):
    """The offer is gone: declined, expired, withdrawn, cancelled, escalated."""

    order_id: str
    version: int
    reason: str


class OrderUpdate(_Server, tag="order_update"):
    """An order of this provider changed; ``order`` is set while assigned."""

    order_id: str
    version: int
    status: str
    trigger: str
    order: AssignedOrder | None = None


class Plan(_Server, tag="plan"):
    """The caregiver's planned visits, in order."""

    visits: list[PlannedVisit]
    computed_at: AwareTime


class Ack(_Server, tag="ack"):
    """The request ``re`` was done (after commit where it writes)."""

    re: str
    order_id: str | None = None
    version: int | None = None
    status: str | None = None
    created: bool | None = None
    alert_id: int | None = None


class Error(_Server, tag="error"):
    """The request ``re`` was refused and changed nothing."""

    re: str | None
    code: str
    message: str
    details: dict[str, Any] | None = None


class Snapshot(_Server, tag="snapshot"):
    """The console's starting state; ``history_lost`` when resume failed."""

    orders: list[OrderView]
    caregivers: list[CaregiverState]
    alerts: list[AlertMessage]
    history_lost: bool = False


class OrderEventMessage(_Server, tag="order_event"):
    """One committed order event and the order as it stands."""

    event: EventBody
    order: OrderView | None


class Caregivers(_Server, tag="caregivers"):
    """Caregivers whose location or duty changed since the last batch."""

    caregivers: list[CaregiverState]


class AlertMessage(_Server, tag="alert"):
    """An alert for operators."""

    alert_id: int
    kind: str
    severity: str
    message: str
    at: datetime
    order_id: str | None = None
    caregiver_id: str | None = None


PhoneServerMessage = Welcome | Offer | OfferWithdrawn | OrderUpdate | Plan | Ack | Error
ConsoleServerMessage = Snapshot | OrderEventMessage | Caregivers | AlertMessage | Error
IntakeServerMessage = Ack | Error
ServerMessage = (
    Welcome
    | Offer
    | OfferWithdrawn
    | OrderUpdate
    | Plan
    | Ack
    | Error
    | Snapshot
    | OrderEventMessage
    | Caregivers
    | AlertMessage
)

_ENCODER = msgspec.json.Encoder()
_SEQ_PLACEHOLDER = b'"seq":-1'


def encode(message: _Server) -> bytes:
    """The JSON of a server message; a ``seq`` of -1 is set by :func:`with_seq`."""
    return _ENCODER.encode(message)


def with_seq(frame: bytes, seq: int) -> bytes:
    """Set the envelope's ``seq`` of an encoded message left at -1.

    JSON escapes quotes inside strings, so the placeholder can only match
    the envelope's own field.
    """
    return frame.replace(_SEQ_PLACEHOLDER, b'"seq":%d' % seq, 1)


def error_message(error: HomecareError, re: str | None, seq: int) -> Error:
    """The ``error`` message for an error; its code is the error's stable code."""
    return Error(
        id=f"err-{re or 'none'}"[:64],
        seq=seq,
        re=re,
        code=error.code,
        message=error.message,
        details=dict(error.details) if error.details else None,
    )


# -- decoding ------------------------------------------------------------------

_MSGSPEC_CODES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Object missing required field"), "missing_field"),
    (re.compile(r"^Object contains unknown field"), "unknown_field"),
    (re.compile(r"^Invalid value .* - at `\$\.type`$"), "unknown_type"),
    (re.compile(r"^Expected `object`, got `\w+`$"), "not_object"),
    (re.compile(r"^Expected `\w+` (<|>|of length|with|that)"), "out_of_range"),
    (re.compile(r"^Expected `[^`]+`, got"), "wrong_type"),
    (re.compile(r"^Invalid value"), "out_of_range"),
)


def _validation_code(message: str) -> str:
    for pattern, code in _MSGSPEC_CODES:
        if pattern.search(message):
            return code
    return "invalid"


def _depth(data: bytes) -> int:
    """The deepest nesting of objects and arrays, skipping strings."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x7D, 0x5D):  # } ]
            depth -= 1
    return deepest


class _Decoders:
    """One msgspec decoder per message union, built once."""

    cache: ClassVar[dict[object, msgspec.json.Decoder[Any]]] = {}

    @classmethod
    def of(cls, schema: object) -> msgspec.json.Decoder[Any]:
        decoder = cls.cache.get(schema)
        if decoder is None:
            decoder = cls.cache[schema] = msgspec.json.Decoder(schema)
        return decoder


def decode_request(
    data: bytes, schema: object, *, max_bytes: int, max_depth: int
) -> Any:
    """Validate one text frame against a union of request schemas.

    Args:
        data: The frame's payload, undecoded.
        schema: A union of request structs (e.g. :data:`PhoneRequest`).
        max_bytes: Largest message accepted, in bytes.
        max_depth: Deepest nesting of objects and arrays accepted.

    Raises:
        ValidationError: With the stable code of the first fault found:
            ``too_large``, ``bad_utf8``, ``too_deep``, ``bad_json``,
            ``not_object``, ``unknown_type``, ``missing_field``,
            ``wrong_type``, ``out_of_range``, ``unknown_field`` or
            ``unsupported_version``.
    """
    if len(data) > max_bytes:
        raise ValidationError(
            f"message is larger than {max_bytes} bytes",
            code="too_large",
            max_bytes=max_bytes,
        )
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(
                "message is not valid UTF-8", code="bad_utf8"
            ) from None
    # counting brackets is cheap; the exact scan runs only when it may matter
    if data.count(b"{") + data.count(b"[") > max_depth and _depth(data) > max_depth:
        raise ValidationError(
            f"message nests deeper than {max_depth} levels",
            code="too_deep",
            max_depth=max_depth,
        )
    try:
        message = _Decoders.of(schema).decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise ValidationError(text, code=_validation_code(text)) from None
    except msgspec.DecodeError as exc:
        raise ValidationError(f"message is not JSON: {exc}", code="bad_json") from None
    if message.v != VERSION:
        raise ValidationError(
            f"protocol version {message.v} is not supported; use {VERSION}",
            code="unsupported_version",
        )
    return message


def message_id_of(data: bytes) -> str | None:
    """The ``id`` of a message that failed validation, when it can be read."""
    try:
        head = msgspec.json.decode(data, type=_Head)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return head.id


class _Head(msgspec.Struct):
    id: MessageId | None = None


def literal_type(message: _Request) -> str:
    """The ``type`` tag of a request."""
    tag = message.__struct_config__.tag
    assert isinstance(tag, str)
    return tag
