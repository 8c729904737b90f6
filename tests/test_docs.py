"""The generated command reference matches the CLI."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import cli_reference  # noqa: E402


def test_cli_reference_is_up_to_date_with_the_commands() -> None:
    expected = cli_reference.render()

    actual = cli_reference.DOC_PATH.read_text(encoding="utf-8")

    assert actual == expected, (
        "run `python tools/cli_reference.py` to update docs/cli.md"
    )


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci_script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")

    assert "<!-- test-command -->" in readme
    assert "<!-- test-command -->" in ci_script
