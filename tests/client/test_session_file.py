"""The session file: its exact shape, private modes, atomic writes, old sessions."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from nerd import config
from nerd.errors import ConfigError


def test_a_saved_session_has_the_exact_shape_of_the_spec(home: Path) -> None:
    session = config.load_session()

    session.set_tokens("access", "refresh")
    session.set_project("physics")
    config.save_session(session)

    saved = json.loads((home / ".nerd" / "session.json").read_text())
    assert saved == {
        "oauth": {
            "access_token": "",
            "refresh_token": "",
            "expiration": "",
            "scope": "",
            "token_type": "",
        },
        "jwt": {"token": "access", "refresh_token": "refresh"},
        "project": {"name": "physics", "aws_region": ""},
    }


def test_the_session_is_0600_in_a_0700_folder(home: Path) -> None:
    session = config.load_session()

    config.save_session(session)

    folder = home / ".nerd"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "session.json").stat().st_mode) == 0o600


def test_nerd_session_file_chooses_the_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERD_SESSION_FILE", str(home / "s" / "mine.json"))

    config.save_session(config.load_session())

    assert (home / "s" / "mine.json").is_file()
    assert not (home / ".nerd" / "session.json").exists()


def test_unknown_keys_in_a_session_survive_a_save(home: Path) -> None:
    path = home / "session.json"
    path.write_text(json.dumps({"jwt": {"token": "a", "kept": 1}, "later": [1]}))
    session = config.load_session(path)

    session.set_tokens("b", "r")
    config.save_session(session)

    saved = json.loads(path.read_text())
    assert saved["later"] == [1]
    assert saved["jwt"] == {"token": "b", "refresh_token": "r", "kept": 1}


def test_a_session_of_an_older_cli_keeps_its_tokens_in_oauth(home: Path) -> None:
    path = home / "session.json"
    path.write_text(json.dumps({"oauth": {"access_token": "a", "refresh_token": "r"}}))
    session = config.load_session(path)

    first = (session.access_token, session.refresh_token)
    session.set_tokens("a2", "r2")

    assert first == ("a", "r")
    assert session.raw["oauth"]["access_token"] == "a2"
    assert session.raw["jwt"]["token"] == ""


def test_a_malformed_session_names_the_file_and_the_line(home: Path) -> None:
    path = home / "session.json"
    path.write_text('{"jwt":\n\n  {"token": }\n}')

    with pytest.raises(ConfigError) as caught:
        config.load_session(path)

    assert str(path) in caught.value.message
    assert "line 3" in caught.value.message


def test_a_session_section_of_the_wrong_type_is_an_error(home: Path) -> None:
    path = home / "session.json"
    path.write_text(json.dumps({"project": "physics"}))

    with pytest.raises(ConfigError, match="'project' must be an object"):
        config.load_session(path)


def test_clearing_tokens_keeps_the_project(home: Path) -> None:
    session = config.load_session()
    session.set_tokens("a", "r")
    session.set_project("physics")

    session.clear_tokens()

    assert not session.is_logged_in
    assert session.project == "physics"


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(home: Path) -> None:
    path = home / "doc.json"
    config.write_json_atomic(path, {"old": True})

    with pytest.raises(TypeError):
        config.write_json_atomic(path, {"new": object()})

    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in home.iterdir()] == ["doc.json"]


def test_an_existing_folder_keeps_its_mode(home: Path) -> None:
    folder = home / "shared"
    folder.mkdir(mode=0o755)

    config.write_json_atomic(folder / "doc.json", {})

    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_an_existing_open_nerd_folder_is_made_private(home: Path) -> None:
    folder = home / ".nerd"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)

    config.save_session(config.load_session())

    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
