"""Settings: sources in order, unknown keys refused, derived values."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.load()
    assert settings.store == "memory://"
    assert settings.effective_peer_ttl == 2 * settings.announce_interval
    assert settings.default_numwant == 50


def test_file_then_environment_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "m.toml"
    config.write_text("announce_interval = 100\nmin_announce_interval = 50\nport = 1000\n")
    monkeypatch.setenv("MERIDIAN_MIN_ANNOUNCE_INTERVAL", "40")
    monkeypatch.setenv("MERIDIAN_PORT", "2000")
    settings = Settings.load(config, port=3000)
    assert (settings.announce_interval, settings.min_announce_interval, settings.port) == (100, 40, 3000)
    assert settings.effective_peer_ttl == 200


def test_unknown_file_key_refused(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text("intervall = 5\n")
    with pytest.raises(SettingsError, match="intervall"):
        Settings.load(config)


def test_unknown_environment_variable_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERIDIAN_INTERVALL", "5")
    with pytest.raises(SettingsError, match="MERIDIAN_INTERVALL"):
        Settings.load()


def test_bad_values_refused() -> None:
    with pytest.raises(SettingsError):
        Settings.load(trusted_proxies=["not-a-cidr"])
    with pytest.raises(SettingsError):
        Settings.load(listen=["localhost"])
