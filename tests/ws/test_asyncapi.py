"""docs/asyncapi.yaml describes exactly the msgspec schemas of the protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ws import protocol
from ws.asyncapi import CHANNELS, document, render

DOC = Path(__file__).parents[2] / "docs" / "asyncapi.yaml"


def _structs(union: Any) -> tuple[type[msgspec.Struct], ...]:
    return tuple(union.__args__)


def test_document_in_the_repository_is_the_one_the_schemas_give() -> None:
    """Regenerate with `python -m ws.asyncapi > docs/asyncapi.yaml` after a change."""
    assert DOC.read_text(encoding="utf-8") == render(document())


def test_document_is_yaml_of_the_same_data() -> None:
    """The emitted YAML parses back to the document."""
    yaml = pytest.importorskip("yaml")
    parsed = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    assert parsed == json.loads(json.dumps(document()))
    assert parsed["asyncapi"].startswith("3.")


@pytest.mark.parametrize(
    "kind",
    [
        *_structs(protocol.PhoneRequest),
        *_structs(protocol.IntakeRequest),
        *_structs(protocol.ServerMessage),
    ],
    ids=lambda kind: kind.__name__,
)
def test_every_message_type_is_documented_with_its_fields(
    kind: type[msgspec.Struct],
) -> None:
    """Each message has a payload schema listing every field of its struct."""
    doc = document()
    tag = kind.__struct_config__.tag
    assert isinstance(tag, str)
    message = doc["components"]["messages"][tag]
    schema = doc["components"]["schemas"][message["payload"]["$ref"].split("/")[-1]]
    assert set(schema["properties"]) == {"type", *kind.__struct_fields__}
    assert schema["properties"]["type"] == {"enum": [tag]}
    assert any(tag in channel["messages"] for channel in doc["channels"].values())


def test_each_channel_lists_what_its_endpoint_accepts_and_sends() -> None:
    """Channels name the addresses the edge serves."""
    doc = document()
    assert {c["address"] for c in doc["channels"].values()} == {
        "/v1/caregiver",
        "/v1/intake",
        "/v1/console/stream",
    }
    for name, (_, _, sent, received) in CHANNELS.items():
        listed = set(doc["channels"][name]["messages"])
        tags = {k.__struct_config__.tag for k in (*sent, *received)}
        assert listed == tags
