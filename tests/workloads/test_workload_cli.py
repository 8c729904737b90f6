"""``nerd secret`` and ``nerd workload`` through the real command line: what they
print, and how they fail (exit code and message)."""

from __future__ import annotations

import json
from pathlib import Path

from workload_helpers import Cli


def test_secret_create_list_describe_and_delete(nerd: Cli) -> None:
    created = nerd("secret", "create", "cli-1", "TOKEN=value-cli-1", "B=2")
    listed = nerd("secret", "list", "--output", "raw")
    hidden = nerd("secret", "describe", "cli-1")
    shown = nerd("--output", "json", "secret", "describe", "cli-1", "--show-values")
    deleted = nerd("secret", "delete", "cli-1")

    assert created.exit_code == 0, created.stderr
    assert created.stdout == "cli-1\n"
    assert "cli-1\topaque\tB, TOKEN" in listed.stdout
    assert "value-cli-1" not in listed.stdout + hidden.stdout
    assert json.loads(shown.stdout)["data"] == {"TOKEN": "value-cli-1", "B": "2"}
    assert deleted.exit_code == 0
    assert nerd("secret", "describe", "cli-1").exit_code == 3


def test_a_registry_secret_needs_a_username_and_password(nerd: Cli) -> None:
    done = nerd("secret", "create", "ghcr.io", "--type", "registry", "-u", "me")

    assert done.exit_code == 2
    assert done.stderr.startswith(
        "nerd: error: a registry secret needs --username and --password"
    )


def test_an_opaque_secret_without_values_exits_2(nerd: Cli) -> None:
    done = nerd("secret", "create", "empty")

    assert done.exit_code == 2
    assert done.stderr == ("nerd: error: give the secret's values as KEY=VALUE\n")


def test_a_malformed_pair_exits_2_and_names_it(nerd: Cli) -> None:
    done = nerd("secret", "create", "bad", "NOEQUALS")

    assert done.exit_code == 2
    assert "nerd: error: 'NOEQUALS' is not KEY=VALUE" in done.stderr


def test_a_second_secret_of_the_same_name_exits_8(nerd: Cli) -> None:
    nerd("secret", "create", "dup", "A=1")

    done = nerd("secret", "create", "dup", "A=2")

    assert done.exit_code == 8
    assert done.stderr == "nerd: error: secret 'dup' already exists\n"


def test_describing_an_unknown_workload_exits_3(nerd: Cli) -> None:
    done = nerd("workload", "describe", "w-00000000")

    assert done.exit_code == 3
    assert done.stderr == (
        "nerd: error: workload w-00000000 not found in project 'default'\n"
    )


def test_a_workload_id_of_the_wrong_kind_is_a_usage_error(nerd: Cli) -> None:
    done = nerd("workload", "stop", "q-00000000")

    assert done.exit_code == 2
    assert "'q-00000000' is not a workload id (w-…)" in done.stderr


def test_a_workload_with_no_instances_is_listed_and_described(nerd: Cli) -> None:
    started = nerd("workload", "start", "busybox:1", "-i", "0", "-e", "A=1")
    workload = started.stdout.strip()

    listed = nerd("workload", "list", "--output", "raw")
    described = nerd("--output", "json", "workload", "describe", workload)

    assert started.exit_code == 0, started.stderr
    assert workload.startswith("w-")
    assert f"{workload}\tbusybox:1\trunning\t0" in listed.stdout
    document = json.loads(described.stdout)
    assert (document["env"], document["task_counts"], document["workers"]) == (
        {"A": "1"},
        {},
        [],
    )


def test_downloading_a_workload_without_outputs_exits_3(
    nerd: Cli, tmp_path: Path
) -> None:
    workload = nerd("workload", "start", "busybox:1", "-i", "0").stdout.strip()

    done = nerd("workload", "download", workload, str(tmp_path / "out"))

    assert done.exit_code == 3
    assert "has an output dataset" in done.stderr


def test_task_create_names_a_queue_or_a_workload(nerd: Cli) -> None:
    done = nerd("task", "create", "d-00000000", "--", "true")

    assert done.exit_code == 2
    assert "is not a queue id (q-…) or a workload id (w-…)" in done.stderr


def test_worker_logs_of_a_workload_without_workers_exits_3(nerd: Cli) -> None:
    workload = nerd("workload", "start", "busybox:1", "-i", "0").stdout.strip()

    done = nerd("worker", "logs", workload)

    assert done.exit_code == 3
    assert done.stderr == f"nerd: error: workload {workload} has no worker yet\n"
