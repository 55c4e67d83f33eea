"""The AsyncAPI 3 document of the realtime protocol, built from its schemas.

``docs/asyncapi.yaml`` is this module's output; a test rebuilds it from the
msgspec schemas of :mod:`ws.protocol` and compares, so the document cannot
drift from the code. Regenerate it with::

    python -m ws.asyncapi > docs/asyncapi.yaml
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from ws import protocol as p

__all__ = ["CHANNELS", "document", "render"]

_REF = "#/components/schemas/{name}"


def _types(union: Any) -> tuple[type[msgspec.Struct], ...]:
    return tuple(getattr(union, "__args__", (union,)))


#: channel name -> (address, roles, what the client sends, what it receives)
CHANNELS: dict[
    str, tuple[str, str, Sequence[type[msgspec.Struct]], Sequence[type[msgspec.Struct]]]
] = {
    "caregiver": (
        "/v1/caregiver",
        "caregiver, vendor",
        _types(p.PhoneRequest),
        _types(p.PhoneServerMessage),
    ),
    "intake": (
        "/v1/intake",
        "operator, admin, partner, device",
        _types(p.IntakeRequest),
        _types(p.IntakeServerMessage),
    ),
    "console": (
        "/v1/console/stream",
        "operator, admin",
        (),
        _types(p.ConsoleServerMessage),
    ),
}

_SERVER_TYPES = frozenset(_types(p.ServerMessage))


def _tag(kind: type[msgspec.Struct]) -> str:
    tag = kind.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as plain data."""
    kinds: list[type[msgspec.Struct]] = []
    for _, _, sent, received in CHANNELS.values():
        kinds += [k for k in (*sent, *received) if k not in kinds]
    _, schemas = msgspec.json.schema_components(kinds, ref_template=_REF)
    for kind in kinds:
        if kind in _SERVER_TYPES:
            schema = schemas[kind.__name__]
            schema["properties"]["seq"] = {
                "type": "integer",
                "minimum": 0,
                "description": "position in the receiver's history",
            }
            schema["required"] = sorted({*schema["required"], "seq"})
    messages = {
        _tag(kind): {
            "name": _tag(kind),
            "title": kind.__name__,
            "summary": (kind.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": _REF.format(name=kind.__name__)},
        }
        for kind in kinds
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name, (address, roles, sent, received) in CHANNELS.items():
        channels[name] = {
            "address": address,
            "description": f"Roles: {roles}. Token in the Authorization header"
            " or the access_token query parameter.",
            "messages": {
                _tag(k): {"$ref": f"#/components/messages/{_tag(k)}"}
                for k in (*sent, *received)
            },
        }
        if sent:
            operations[f"{name}Requests"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{name}"},
                "summary": "What clients send; each gets ack or error.",
                "messages": [
                    {"$ref": f"#/channels/{name}/messages/{_tag(k)}"} for k in sent
                ],
            }
        operations[f"{name}Messages"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": "What the server sends.",
            "messages": [
                {"$ref": f"#/channels/{name}/messages/{_tag(k)}"} for k in received
            ],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "homecare-dispatch realtime protocol",
            "version": str(p.VERSION),
            "description": "JSON messages over websockets; see docs/protocol.md.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:8080", "protocol": "ws"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def _key(key: str) -> str:
    plain = _PLAIN_KEY.match(key) and key.lower() not in _YAML_WORDS
    return key if plain else _scalar(key)


def _scalar(value: Any) -> str:
    # JSON scalars are YAML 1.2 scalars; strings stay double-quoted
    return json.dumps(value, ensure_ascii=False)


def _lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        out = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                out.append(f"{pad}{_key(key)}:")
                out += _lines(item, indent + 1)
            else:
                out.append(f"{pad}{_key(key)}: {_inline(item)}")
        return out
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, dict | list) and item:
                inner = _lines(item, indent + 1)
                out.append(f"{pad}- {inner[0].lstrip()}")
                out += inner[1:]
            else:
                out.append(f"{pad}- {_inline(item)}")
        return out
    return [pad + _scalar(value)]


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def render(doc: dict[str, Any]) -> str:
    """The document as YAML (block style, JSON-quoted scalars)."""
    header = (
        "# Generated by `python -m ws.asyncapi` from ws/protocol.py; do not edit.\n"
    )
    return header + "\n".join(_lines(doc, 0)) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(document()))
