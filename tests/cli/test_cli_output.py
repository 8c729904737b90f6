"""The three output formats, and where messages and progress go."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_helpers import Nerd

from nerd.cli.output import Printer, cell
from nerd.models import Queue

COLUMNS = [("id", "ID"), ("argv", "COMMAND"), ("exit_code", "EXIT")]
ROWS = [
    {"id": "t-00000001", "argv": ["echo", "a b"], "exit_code": 0},
    {"id": "t-00000002", "argv": ["true"], "exit_code": None},
]
QUEUE = Queue(
    id="q-12345678",
    project="physics",
    created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    task_counts={"PENDING": 2},
)


def test_json_output_is_one_parseable_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Printer("json").table(COLUMNS, ROWS)

    assert json.loads(capsys.readouterr().out) == ROWS


def test_json_output_of_a_model_has_its_wire_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Printer("json").record([("id", "id")], QUEUE)

    document = json.loads(capsys.readouterr().out)
    assert document["created_at"] == "2026-01-02T03:04:05Z"
    assert document["task_counts"] == {"PENDING": 2}


def test_raw_output_is_tab_separated_without_headers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Printer("raw").table(COLUMNS, ROWS)

    assert capsys.readouterr().out == "t-00000001\techo 'a b'\t0\nt-00000002\ttrue\t\n"


def test_a_raw_record_is_one_field_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    Printer("raw").record([("id", "id"), ("created_at", "created")], QUEUE)

    assert (
        capsys.readouterr().out == "id\tq-12345678\ncreated_at\t2026-01-02 03:04:05\n"
    )


def test_pretty_output_is_a_table_with_headers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Printer("pretty").table(COLUMNS, ROWS)

    lines = capsys.readouterr().out.splitlines()
    assert any("ID" in line and "COMMAND" in line for line in lines)
    assert any("t-00000002" in line and line.rstrip().endswith("-") for line in lines)


def test_a_single_value_is_bare_text_or_a_json_object(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Printer("pretty").value("id", "d-96fac377")
    Printer("json").value("id", "d-96fac377")

    pretty, as_json = capsys.readouterr().out.split("\n", 1)
    assert pretty == "d-96fac377"
    assert json.loads(as_json) == {"id": "d-96fac377"}


def test_messages_go_to_stderr_in_every_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Printer("json").message("Uploading dataset with ID 'd-96fac377'")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "Uploading dataset with ID 'd-96fac377'\n"


def test_progress_draws_nothing_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Printer("pretty").progress("upload") as progress:
        progress(100, 100)

    assert capsys.readouterr() == ("", "")


def test_cells_quote_argv_and_join_mappings() -> None:
    assert cell(["sh", "-c", "echo hi"]) == "sh -c 'echo hi'"
    assert cell({"A": "1", "B": "2"}) == "A=1,B=2"
    assert cell(None, empty="-") == "-"


def test_control_characters_in_cells_are_escaped_and_the_rest_kept() -> None:
    assert cell("run\x1b[2J\nnext\x7f\x9b") == "run\\x1b[2J\\nnext\\x7f\\x9b"
    assert cell("naïve été 数据\t") == "naïve été 数据\\t"
    assert cell(["echo", "a\rb"]) == "echo 'a\\rb'"


def test_a_dataset_name_with_control_characters_cannot_forge_table_rows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [{"id": "d-00000001", "name": "x\nd-99999999\tforged"}]

    Printer("raw").table([("id", "ID"), ("name", "NAME")], rows)
    Printer("pretty").table([("id", "ID"), ("name", "NAME")], rows)

    out = capsys.readouterr().out
    assert "d-00000001\tx\\nd-99999999\\tforged\n" in out
    assert "\nd-99999999" not in out


def test_the_output_flag_works_before_and_after_the_command(nerd: Nerd) -> None:
    before = nerd("--output", "json", "version")
    after = nerd("version", "--output", "json")
    short = nerd("version", "--json-format")

    assert json.loads(before.stdout) == json.loads(after.stdout) == {"version": "0.1.0"}
    assert json.loads(short.stdout) == {"version": "0.1.0"}


def test_nerd_output_sets_the_format_and_a_flag_beats_it(
    nerd: Nerd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERD_OUTPUT", "json")

    from_env = nerd("version")
    flagged = nerd("version", "--output", "raw")

    assert json.loads(from_env.stdout) == {"version": "0.1.0"}
    assert flagged.stdout == "nerd 0.1.0\n"


def test_enabled_logging_appends_output_and_errors_to_the_log_file(
    nerd: Nerd, home: Path
) -> None:
    log_file = home / "nerd.log"
    document = {"logging": {"enabled": True, "file_location": str(log_file)}}
    (home / ".nerd").mkdir()
    (home / ".nerd" / "config.json").write_text(json.dumps(document))

    nerd("version")
    nerd("queue", "list")

    text = log_file.read_text()
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert "nerd 0.1.0" in text
    assert "nerd: error: not logged in" in text


def _logging_enabled_at_the_default_place(home: Path) -> Path:
    (home / ".nerd").mkdir(mode=0o700)
    document = {"logging": {"enabled": True}}
    (home / ".nerd" / "config.json").write_text(json.dumps(document))
    return home / ".nerd" / "log"


def test_the_default_log_file_is_0600_even_under_an_open_umask(home: Path) -> None:
    log_file = _logging_enabled_at_the_default_place(home)

    done = subprocess.run(
        [sys.executable, "-m", "nerd.cli.main", "version"],
        capture_output=True,
        env=dict(os.environ),
        umask=0,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "nerd 0.1.0" in log_file.read_text()
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600


def test_an_older_log_file_that_others_could_read_is_made_0600(
    nerd: Nerd, home: Path
) -> None:
    log_file = _logging_enabled_at_the_default_place(home)
    log_file.write_text("an older line\n")
    log_file.chmod(0o644)

    nerd("version")

    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert log_file.read_text().startswith("an older line\n")
