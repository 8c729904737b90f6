"""The config file: defaults, where it is found, malformed files, saving it back."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from nerd import config
from nerd.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_missing_config_points_at_the_embedded_server(home: Path) -> None:
    cfg = config.load_config()

    assert cfg.path == home / ".nerd" / "config.json"
    assert cfg.nerd_api_endpoint == "http://127.0.0.1:8642"
    assert cfg.auth.api_endpoint == "http://127.0.0.1:8642"
    assert cfg.auth.oauth_localserver == "localhost:9876"
    assert cfg.auth.public_key == ""
    assert cfg.is_logging_enabled is False


def test_missing_keys_take_defaults_and_given_ones_are_used(home: Path) -> None:
    path = write(
        home / ".nerd" / "config.json",
        json.dumps({"nerd_api_endpoint": "http://10.0.0.1:9", "auth": {}}),
    )

    cfg = config.load_config()

    assert cfg.path == path
    assert cfg.nerd_api_endpoint == "http://10.0.0.1:9"
    assert cfg.auth.oauth_localserver == "localhost:9876"


def test_an_auth_endpoint_not_given_follows_the_batch_endpoint(home: Path) -> None:
    write(
        home / ".nerd" / "config.json",
        json.dumps({"nerd_api_endpoint": "http://127.0.0.1:9"}),
    )

    cfg = config.load_config()

    assert cfg.auth.api_endpoint == "http://127.0.0.1:9"


def test_an_auth_endpoint_given_is_kept_apart(home: Path) -> None:
    document = {
        "nerd_api_endpoint": "http://127.0.0.1:9",
        "auth": {"api_endpoint": "http://127.0.0.1:10"},
    }
    write(home / ".nerd" / "config.json", json.dumps(document))

    cfg = config.load_config()

    assert cfg.auth.api_endpoint == "http://127.0.0.1:10"


def test_a_malformed_config_names_the_file_and_the_line(home: Path) -> None:
    path = write(home / "bad.json", '{\n  "auth": {},\n  "nerd_api_endpoint": ,\n}\n')

    with pytest.raises(ConfigError) as caught:
        config.load_config(path)

    assert str(path) in caught.value.message
    assert "line 3" in caught.value.message
    assert caught.value.exit_code == 2


def test_a_config_that_is_not_an_object_is_an_error(home: Path) -> None:
    path = write(home / "list.json", "[1, 2]")

    with pytest.raises(ConfigError, match=r"expected a JSON object, not a list"):
        config.load_config(path)


def test_a_key_of_the_wrong_type_is_an_error_naming_it(home: Path) -> None:
    path = write(home / "c.json", json.dumps({"auth": {"api_endpoint": 5}}))

    with pytest.raises(ConfigError, match=r"'api_endpoint' must be a string, not 5"):
        config.load_config(path)


def test_nerd_config_file_then_config_choose_the_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write(home / "first.json", json.dumps({"nerd_api_endpoint": "http://a"}))
    second = write(home / "second.json", json.dumps({"nerd_api_endpoint": "http://b"}))
    monkeypatch.setenv("CONFIG", str(second))

    from_config = config.load_config()
    monkeypatch.setenv("NERD_CONFIG_FILE", str(first))
    from_nerd_config_file = config.load_config()

    assert from_config.nerd_api_endpoint == "http://b"
    assert from_nerd_config_file.nerd_api_endpoint == "http://a"


def test_nerd_config_json_replaces_the_file_unless_a_path_is_given(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(home / "c.json", json.dumps({"nerd_api_endpoint": "http://file"}))
    monkeypatch.setenv("NERD_CONFIG_FILE", str(path))
    monkeypatch.setenv(
        "NERD_CONFIG_JSON", json.dumps({"nerd_api_endpoint": "http://env"})
    )

    from_env = config.load_config()
    explicit = config.load_config(path)

    assert (from_env.path, from_env.nerd_api_endpoint) == (None, "http://env")
    assert explicit.nerd_api_endpoint == "http://file"


def test_either_form_of_the_logging_switch_enables_the_log_file(home: Path) -> None:
    old = write(home / "old.json", json.dumps({"enable_logging": True}))
    new = write(
        home / "new.json",
        json.dumps({"logging": {"enabled": True, "file_location": "~/x.log"}}),
    )

    old_cfg, new_cfg = config.load_config(old), config.load_config(new)

    assert old_cfg.is_logging_enabled and old_cfg.log_file == home / ".nerd" / "log"
    assert new_cfg.is_logging_enabled and new_cfg.log_file == home / "x.log"


def test_saving_the_public_key_keeps_unknown_keys(home: Path) -> None:
    document = {"auth": {"client_id": "cli", "extra": 1}, "future_key": {"a": [1]}}
    path = write(home / ".nerd" / "config.json", json.dumps(document))
    cfg = config.load_config()

    cfg.set_public_key("PEM")
    config.save_config(cfg)

    saved = json.loads(path.read_text())
    assert saved["future_key"] == {"a": [1]}
    assert saved["auth"] == {
        "client_id": "cli",
        "extra": 1,
        "public_key": "PEM",
        "issuer": "nerd",
    }


def test_saving_a_new_config_makes_a_private_folder(home: Path) -> None:
    cfg = config.load_config()

    cfg.set_public_key("PEM")
    config.save_config(cfg)

    folder = home / ".nerd"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "config.json").stat().st_mode) == 0o600


def test_a_config_from_the_environment_cannot_be_saved(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERD_CONFIG_JSON", "{}")
    cfg = config.load_config()

    with pytest.raises(ConfigError, match="NERD_CONFIG_JSON"):
        config.save_config(cfg)


def test_importing_the_sdk_imports_no_server_stack() -> None:
    import subprocess
    import sys

    script = (
        "import sys, nerd.client\n"
        "heavy = {'fastapi', 'sqlalchemy', 'uvicorn', 'alembic'}\n"
        "print(sorted(m for m in sys.modules if m in heavy or m == 'nerd.server'))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert done.stdout.strip() == "[]"
