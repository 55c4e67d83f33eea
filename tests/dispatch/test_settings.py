"""Settings from the environment, and the README that documents them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatch.errors import SettingsError
from dispatch.settings import VARIABLES, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_build_a_valid_settings_object() -> None:
    """With nothing set, the embedded default is chosen."""
    settings = Settings.from_env({})
    assert settings.database_url == ""
    assert settings.redis_url == ""
    assert settings.port == 8080
    assert settings.offer_timeout_s == 60


def test_every_variable_is_documented_with_its_default() -> None:
    """The README's configuration table lists each variable and default."""
    text = README.read_text(encoding="utf-8")
    for variable in VARIABLES:
        default = f"`{variable.default}`" if variable.default else "(empty)"
        assert f"| `{variable.name}` | {default} |" in text, variable.name


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"HOMECARE_PORT": "eighty"}, "whole number"),
        ({"HOMECARE_PORT": "-1"}, "negative"),
        ({"HOMECARE_LOG_LEVEL": "loud"}, "one of"),
        ({"HOMECARE_DB_POOL_SIZE": "0"}, "at least 1"),
        ({"HOMECARE_LEASE_TTL_S": "2"}, "at least 3"),
        ({"HOMECARE_DATABSE_URL": "postgresql://x"}, "unknown setting"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    env: dict[str, str], fragment: str
) -> None:
    """A malformed or misspelt variable stops the start with a reason."""
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert fragment in refused.value.message
