"""The commented mailstead.toml that `mailstead init` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailstead.config import ConfigError, ListenConfig, default_config_text, load_config


def test_default_config_text_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "mailstead.toml"
    path.write_text(default_config_text("Bücher.example", "mail.example.test"), encoding="utf-8")
    config = load_config(path)
    assert config.domains == ("xn--bcher-kva.example",)
    assert config.hostname == "mail.example.test"
    assert config.data_dir == tmp_path / "var"
    assert config.listen == ListenConfig()
    assert config.storage.format == "maildir"
    assert config.webhooks == ()


def test_default_config_text_refuses_a_bad_domain() -> None:
    with pytest.raises(ConfigError, match="--domain"):
        default_config_text('x"\nevil = 1', "mail.example.test")
