"""The worker loop against a real server: runs, reports, logs, outputs and staging."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from worker_helpers import py

from helpers import RunningServer, token_pair
from nerd.client import Client
from nerd.errors import UsageError
from nerd.models import LogStream, TaskStatus, WorkerStatus
from nerd.worker.loop import run_worker


def work_until_idle(client: Client, queue: str, **options: object) -> int:
    return run_worker(client, queue, idle_exit_s=1.0, **options)  # type: ignore[arg-type]


def test_a_successful_task_reports_its_output_dataset_and_last_line(
    user: Client, worker_client: Client, tmp_path: Path
) -> None:
    queue = user.batch.create_queue()
    code = (
        "import os, pathlib; out = pathlib.Path(os.environ['NERD_OUTPUT_DIR']);"
        "(out / 'result.txt').write_text('42'); print('working'); print('answer=42')"
    )
    task = user.batch.start_task(queue.id, py(code))

    exit_code = work_until_idle(worker_client, queue.id)

    done = user.batch.describe_task(task.id)
    assert exit_code == 0
    assert done.status == TaskStatus.SUCCESS
    assert done.result == "answer=42"
    assert done.output_dataset is not None
    user.data.download(done.output_dataset, tmp_path / "out")
    assert (tmp_path / "out" / "result.txt").read_text() == "42"


def test_a_failing_task_reports_its_exit_code_and_stderr_tail(
    user: Client, worker_client: Client
) -> None:
    queue = user.batch.create_queue()
    code = "import sys; sys.stderr.write('x' * 4000 + 'boom: bad gamma'); sys.exit(3)"
    task = user.batch.start_task(queue.id, py(code), max_attempts=1)

    work_until_idle(worker_client, queue.id)

    done = user.batch.describe_task(task.id)
    assert done.status == TaskStatus.FAILED
    assert done.exit_code == 3
    assert done.message is not None
    assert "xxxxboom: bad gamma" in done.message
    assert done.message.count("x") == 2048 - len("boom: bad gamma")


def test_stdout_and_stderr_are_shipped_as_task_logs(
    user: Client, worker_client: Client
) -> None:
    queue = user.batch.create_queue()
    code = "import sys; print('to stdout'); sys.stderr.write('to stderr π\\n')"
    task = user.batch.start_task(queue.id, py(code))

    work_until_idle(worker_client, queue.id)

    entries = user.batch.task_logs(task.id).entries
    by_stream = {
        stream: "".join(e.data for e in entries if e.stream == stream)
        for stream in LogStream
    }
    assert by_stream == {
        LogStream.STDOUT: "to stdout\n",
        LogStream.STDERR: "to stderr π\n",
    }


def test_task_stdin_and_env_reach_the_command(
    user: Client, worker_client: Client
) -> None:
    queue = user.batch.create_queue()
    code = "import os, sys; print(sys.stdin.read(), os.environ['GAMMA'])"
    task = user.batch.start_task(
        queue.id, py(code), env={"GAMMA": "0.01"}, stdin=b"from stdin"
    )

    work_until_idle(worker_client, queue.id)

    assert user.batch.describe_task(task.id).result == "from stdin 0.01"


def test_command_template_is_put_before_the_task_argv(
    user: Client, worker_client: Client
) -> None:
    queue = user.batch.create_queue()
    task = user.batch.start_task(queue.id, ["import sys; print(sys.argv[1:])", "a"])

    work_until_idle(worker_client, queue.id, command_template=[sys.executable, "-c"])

    assert user.batch.describe_task(task.id).result == "['a']"


def test_unknown_command_fails_with_exit_127_naming_it(
    user: Client, worker_client: Client
) -> None:
    queue = user.batch.create_queue()
    task = user.batch.start_task(queue.id, ["no-such-program-xyz"], max_attempts=1)

    work_until_idle(worker_client, queue.id)

    done = user.batch.describe_task(task.id)
    assert (done.status, done.exit_code) == (TaskStatus.FAILED, 127)
    assert done.message is not None
    assert done.message.startswith("command not found: no-such-program-xyz")


def test_input_dataset_is_staged_read_only_and_cached_once_per_host(
    user: Client, worker_client: Client, tmp_path: Path, home: Path
) -> None:
    source = tmp_path / "input"
    source.mkdir()
    (source / "digits.csv").write_text("1,2,3\n")
    dataset = user.data.upload(source)
    queue = user.batch.create_queue(input_dataset=dataset.id)
    code = (
        "import os; d = os.environ['NERD_INPUT_DIR'];"
        "print(d, open(os.path.join(d, 'digits.csv')).read().strip())"
    )
    tasks = [user.batch.start_task(queue.id, py(code)) for _ in range(2)]

    work_until_idle(worker_client, queue.id)

    cached = home / ".nerd" / "cache" / "datasets" / dataset.id
    results = {user.batch.describe_task(t.id).result for t in tasks}
    assert results == {f"{cached} 1,2,3"}
    assert stat.S_IMODE((cached / "digits.csv").stat().st_mode) == 0o444
    assert stat.S_IMODE(cached.stat().st_mode) == 0o555
    leftovers = [p.name for p in cached.parent.iterdir() if p.name != dataset.id]
    assert leftovers == [f".{dataset.id}.lock"]


def test_an_input_dataset_that_cannot_be_staged_fails_the_task_with_exit_125(
    user: Client, worker_client: Client, server: RunningServer, tmp_path: Path
) -> None:
    folder = tmp_path / "input"
    folder.mkdir()
    (folder / "data.bin").write_bytes(os.urandom(4096))
    dataset = user.data.upload(folder)
    queue = user.batch.create_queue(input_dataset=dataset.id)
    task = user.batch.start_task(queue.id, ["true"], max_attempts=1)
    _corrupt_every_pack(server.data_dir / "objects")

    work_until_idle(worker_client, queue.id)

    done = user.batch.describe_task(task.id)
    assert (done.status, done.exit_code) == (TaskStatus.FAILED, 125)
    assert done.message is not None
    assert done.message.startswith("staging the input dataset failed:")


def test_once_exits_after_one_run(user: Client, worker_client: Client) -> None:
    queue = user.batch.create_queue()
    first = user.batch.start_task(queue.id, ["true"])
    second = user.batch.start_task(queue.id, ["true"])

    run_worker(worker_client, queue.id, once=True)

    statuses = [user.batch.describe_task(t.id).status for t in (first, second)]
    assert statuses == [TaskStatus.SUCCESS, TaskStatus.PENDING]


def test_the_worker_signs_off_when_it_exits(
    user: Client, worker_client: Client
) -> None:
    queue = user.batch.create_queue()

    work_until_idle(worker_client, queue.id)

    mine = [w for w in user.batch.list_workers() if w.queue == queue.id]
    assert [w.status for w in mine] == [WorkerStatus.GONE]


def test_an_unknown_runtime_is_a_usage_error(worker_client: Client) -> None:
    with pytest.raises(UsageError, match="the runtime 'kubernetes' is not supported"):
        run_worker(worker_client, "q-00000000", runtime="kubernetes")


def test_stdin_round_trips_binary_bytes(user: Client, worker_client: Client) -> None:
    queue = user.batch.create_queue()
    data = bytes(range(256))
    code = (
        "import sys, hashlib as h; print(h.sha256(sys.stdin.buffer.read()).hexdigest())"
    )
    task = user.batch.start_task(queue.id, py(code), stdin=data)

    work_until_idle(worker_client, queue.id)

    assert user.batch.describe_task(task.id).result == hashlib.sha256(data).hexdigest()


def test_heartbeats_keep_a_long_silent_run_past_its_lease(
    server_factory: Callable[..., RunningServer], home: Path
) -> None:
    short = server_factory(lease_s=1)
    pair = token_pair(short, "admin", short.admin_password)
    with Client(short.url, lambda: pair["access_token"], "default") as user:
        worker_token = user.auth.worker_token("default").access_token
        queue = user.batch.create_queue()
        task = user.batch.start_task(
            queue.id, py("import time; time.sleep(3.5)"), max_attempts=1
        )
        with Client(short.url, lambda: worker_token, "default") as worker_client:
            work_until_idle(worker_client, queue.id)

        done = user.batch.describe_task(task.id)

    assert (done.status, done.num_dispatches) == (TaskStatus.SUCCESS, 1)


def _corrupt_every_pack(objects: Path) -> None:
    """Flip the last byte of every stored pack, as a failing disk would."""
    for pack in objects.glob("projects/*/packs/**/*"):
        if pack.is_file():
            data = bytearray(pack.read_bytes())
            data[-1] ^= 0xFF
            pack.write_bytes(bytes(data))
