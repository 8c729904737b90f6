"""The one error handler: messages, hints and exit codes, with no server needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import Nerd, closed_port


def use_endpoint(home: Path, port: int) -> None:
    folder = home / ".nerd"
    folder.mkdir(exist_ok=True)
    endpoint = f"http://127.0.0.1:{port}"
    document = {"nerd_api_endpoint": endpoint, "auth": {"api_endpoint": endpoint}}
    (folder / "config.json").write_text(json.dumps(document))


def test_an_unknown_command_is_a_usage_error_exiting_2(nerd: Nerd) -> None:
    result = nerd("frobnicate")

    assert result.exit_code == 2
    assert result.stderr.startswith("nerd: error: No such command 'frobnicate'")
    assert "hint: see `nerd --help`" in result.stderr


def test_an_id_of_the_wrong_kind_names_the_expected_kind(nerd: Nerd) -> None:
    result = nerd("queue", "describe", "d-96fac377")

    assert result.exit_code == 2
    assert "'d-96fac377' is not a queue id (q-…)" in result.stderr


def test_a_task_id_where_a_dataset_is_expected_exits_2(nerd: Nerd) -> None:
    result = nerd("dataset", "describe", "t-615f2d56")

    assert result.exit_code == 2
    assert "is not a dataset id (d-…)" in result.stderr


def test_download_names_every_kind_it_accepts(nerd: Nerd, home: Path) -> None:
    result = nerd("download", "wk-615f2d56", str(home / "out"))

    assert result.exit_code == 2
    assert "a dataset id (d-…) or a task id (t-…) or a queue id (q-…)" in result.stderr


def test_a_command_that_needs_a_login_without_one_exits_4(nerd: Nerd) -> None:
    result = nerd("queue", "list")

    assert result.exit_code == 4
    assert result.stderr == "nerd: error: not logged in\nhint: run `nerd login`\n"


def test_an_unreachable_server_exits_6(nerd: Nerd, home: Path) -> None:
    port = closed_port()
    use_endpoint(home, port)

    result = nerd("login", "--username", "alice", "--password-stdin", stdin=b"pw\n")

    assert result.exit_code == 6
    assert f"cannot reach the nerd server at http://127.0.0.1:{port}" in result.stderr


def test_a_malformed_config_exits_2_naming_file_and_line(
    nerd: Nerd, home: Path
) -> None:
    path = home / "config.json"
    path.write_text('{\n "auth": {\n  "api_endpoint": "x",,\n }\n}\n')

    result = nerd("--config-file", str(path), "queue", "list")

    assert result.exit_code == 2
    assert result.stderr.startswith(f"nerd: error: {path}:3:")
    assert "line 3" in result.stderr


def test_config_alias_and_nerd_config_file_pick_the_config(
    nerd: Nerd, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = home / "broken.json"
    path.write_text("{")

    with_alias = nerd("queue", "list", "--config", str(path))
    monkeypatch.setenv("NERD_CONFIG_FILE", str(path))
    from_env = nerd("queue", "list")

    assert with_alias.exit_code == from_env.exit_code == 2
    assert str(path) in with_alias.stderr
    assert str(path) in from_env.stderr


def test_without_verbose_there_is_no_traceback(nerd: Nerd) -> None:
    result = nerd("queue", "list")

    assert "Traceback" not in result.stderr


def test_verbose_shows_the_traceback(nerd: Nerd) -> None:
    result = nerd("queue", "list", "-v")

    assert result.exit_code == 4
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("hint: run `nerd login`")


def test_nerd_debug_is_the_same_as_verbose(
    nerd: Nerd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERD_DEBUG", "1")

    result = nerd("queue", "list")

    assert "Traceback (most recent call last)" in result.stderr


def test_an_env_pair_without_equals_exits_2(nerd: Nerd) -> None:
    result = nerd("task", "start", "q-12345678", "-e", "FOO", "--", "ls")

    assert result.exit_code == 2
    assert "'FOO' is not KEY=VALUE" in result.stderr


def test_stdin_over_128_kib_is_refused(nerd: Nerd) -> None:
    result = nerd("task", "start", "q-12345678", "--", "cat", stdin=b"x" * 131073)

    assert result.exit_code == 2
    assert "stdin holds more than 128 KiB" in result.stderr


def test_task_describe_takes_at_most_a_queue_and_a_task(nerd: Nerd) -> None:
    result = nerd("task", "describe", "q-12345678", "t-12345678", "t-12345679")

    assert result.exit_code == 2
    assert "expected [QUEUE_ID] TASK_ID, got 3 arguments" in result.stderr


def test_task_describe_wants_the_task_last(nerd: Nerd) -> None:
    result = nerd("task", "describe", "t-12345678", "q-12345678")

    assert result.exit_code == 2
    assert "is not a task id (t-…)" in result.stderr


def test_worker_stop_needs_ids_or_all(nerd: Nerd) -> None:
    result = nerd("worker", "stop")

    assert result.exit_code == 2
    assert "name the workers to stop, or give --all" in result.stderr


def test_an_unknown_output_format_in_the_environment_exits_2(
    nerd: Nerd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERD_OUTPUT", "yaml")

    result = nerd("version")

    assert result.exit_code == 2
    assert "unknown output format 'yaml'" in result.stderr


def test_login_without_a_terminal_or_password_stdin_exits_2(nerd: Nerd) -> None:
    result = nerd("login")

    assert result.exit_code == 2
    assert "stdin is not a terminal" in result.stderr
    assert "--password-stdin" in result.stderr


def test_password_stdin_needs_a_username(nerd: Nerd) -> None:
    result = nerd("login", "--password-stdin", stdin=b"pw\n")

    assert result.exit_code == 2
    assert "--password-stdin needs --username" in result.stderr


def test_browser_login_with_a_username_is_a_usage_error(nerd: Nerd) -> None:
    result = nerd("login", "--browser", "--username", "alice")

    assert result.exit_code == 2
    assert "--browser takes no --username or --password-stdin" in result.stderr


def test_logout_when_not_logged_in_says_so_and_succeeds(nerd: Nerd) -> None:
    result = nerd("logout")

    assert result.exit_code == 0
    assert result.stderr == "Not logged in.\n"


def test_a_worker_log_must_be_named_by_worker_id_or_pid(nerd: Nerd) -> None:
    result = nerd("worker", "logs", "q-12345678")

    assert result.exit_code == 2
    assert "is not a worker id (wk-…)" in result.stderr


def test_no_stdin_skips_reading_a_piped_stdin(nerd: Nerd) -> None:
    result = nerd(
        "task", "start", "q-12345678", "--no-stdin", "--", "cat", stdin=b"x" * 131073
    )

    assert result.exit_code == 4
    assert "not logged in" in result.stderr
