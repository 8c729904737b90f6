"""The whole flow through the real ``nerd`` command line against a real server: upload,
a queue with an input dataset, tasks, workers, logs, downloads, and stopping."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
from e2e_helpers import Shell, is_worker, wait_until

from helpers import RunningServer, is_running_with_env

# Reads the input dataset, writes an output file, and says what it did.
TRAIN = (
    "import os, pathlib;"
    "text = pathlib.Path(os.environ['NERD_INPUT_DIR'], 'numbers.txt').read_text();"
    "total = sum(map(int, text.split())) * int(os.environ.get('FACTOR', '1'));"
    "pathlib.Path(os.environ['NERD_OUTPUT_DIR'], 'total.txt').write_text(str(total));"
    "print('total', total)"
)
WAIT_FOR_GO = (
    "import os, time; open(os.environ['PID_FILE'], 'w').write(str(os.getpid()))\n"
    "while not os.path.exists(os.environ['GO']): time.sleep(0.1)\n"
    "print('finished')"
)
SLOW_TASK = (
    "import os, time; open(os.environ['PID_FILE'], 'w').write(str(os.getpid()))\n"
    "while True: time.sleep(0.2)"
)


def queue_with_input(nerd: Shell, folder: Path) -> str:
    folder.mkdir()
    (folder / "numbers.txt").write_text("1 2 3 4\n")
    dataset = nerd.json("upload", str(folder))
    queue: str = nerd.json("queue", "create", "--input-dataset", dataset["id"])["id"]
    return queue


def start_task(nerd: Shell, queue: str, *args: str) -> str:
    task_id: str = nerd.json("task", "start", queue, *args)["id"]
    return task_id


def test_a_foreground_worker_runs_the_queue_and_outputs_download(
    nerd: Shell, tmp_path: Path
) -> None:
    queue = queue_with_input(nerd, tmp_path / "input")
    first = start_task(nerd, queue, "--", sys.executable, "-c", TRAIN)
    second = start_task(
        nerd, queue, "-e", "FACTOR=10", "--", sys.executable, "-c", TRAIN
    )

    worked = nerd("worker", "work", queue, "--idle-exit-s", "2", timeout_s=120)

    assert worked.exit_code == 0, worked.stderr
    assert "task.succeeded" in worked.stderr
    tasks = nerd.json("task", "list", queue)
    assert {t["id"]: t["status"] for t in tasks} == {
        first: "SUCCESS",
        second: "SUCCESS",
    }
    assert nerd.ok("task", "logs", queue, second).stdout == "total 100\n"
    nerd.ok("download", first, str(tmp_path / "first"))
    assert (tmp_path / "first" / "total.txt").read_text() == "10"
    nerd.ok("download", queue, str(tmp_path / "all"))
    totals = sorted(p.read_text() for p in (tmp_path / "all").rglob("total.txt"))
    assert totals == ["10", "100"]


def test_a_failed_task_shows_its_exit_code_and_stderr(nerd: Shell) -> None:
    queue = nerd.json("queue", "create")["id"]
    code = "import sys; sys.exit('bad gamma: -1')"
    argv = ["--", sys.executable, "-c", code]
    task = start_task(nerd, queue, "--max-attempts", "1", *argv)

    nerd.ok("worker", "work", queue, "--once", timeout_s=120)

    described = nerd.json("task", "describe", queue, task)
    assert described["exit_code"] == 1
    assert "bad gamma: -1" in described["message"]
    logs = nerd.ok("task", "logs", task)
    assert logs.stderr == "bad gamma: -1\n"


def test_two_background_workers_share_the_queue(nerd: Shell) -> None:
    queue = nerd.json("queue", "create")["id"]
    sleep = "import time; time.sleep(1.5)"
    tasks = [
        start_task(nerd, queue, "--", sys.executable, "-c", sleep) for _ in range(4)
    ]

    started = nerd.json("worker", "start", "--count", "2", queue)

    def all_done() -> bool:
        listed = nerd.json("task", "list", queue)
        return all(t["status"] == "SUCCESS" for t in listed)

    wait_until(all_done, timeout_s=90)
    workers = {nerd.json("task", "describe", t)["worker"] for t in tasks}
    assert len(started["pids"]) == 2
    assert len(workers) == 2
    nerd.ok("worker", "stop", "--all")
    wait_until(lambda: not any(map(is_worker, started["pids"])), timeout_s=30)


def test_worker_stop_lets_the_running_task_finish_before_the_worker_exits(
    nerd: Shell, tmp_path: Path
) -> None:
    queue = nerd.json("queue", "create")["id"]
    pid_file, go = tmp_path / "task.pid", tmp_path / "go"
    env = ("-e", f"PID_FILE={pid_file}", "-e", f"GO={go}")
    task = start_task(nerd, queue, *env, "--", sys.executable, "-c", WAIT_FOR_GO)
    worker_pid = nerd.json("worker", "start", queue)["pids"][0]
    wait_until(pid_file.exists)

    nerd.ok("worker", "stop", "--all")
    time.sleep(1)
    go.touch()

    wait_until(lambda: not is_worker(worker_pid), timeout_s=30)
    described = nerd.json("task", "describe", task)
    assert described["status"] == "SUCCESS"
    logged = nerd.ok("worker", "logs", described["worker"]).stdout
    assert "reason=stop_requested" in logged


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap is not installed")
def test_a_task_on_the_servers_host_cannot_read_the_servers_data(
    nerd: Shell, server: RunningServer
) -> None:
    queue = nerd.json("queue", "create")["id"]
    secret = server.data_dir / "admin-password"
    task = start_task(nerd, queue, "--", "sh", "-c", f"cat {secret} || echo hidden")

    nerd.ok("worker", "work", queue, "--once", timeout_s=120)

    assert secret.exists()
    assert nerd.ok("task", "logs", queue, task).stdout == "hidden\n"


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap is not installed")
def test_a_task_sees_only_its_own_folders_of_its_run(nerd: Shell) -> None:
    queue = nerd.json("queue", "create")["id"]
    script = 'ls "$(dirname "$NERD_OUTPUT_DIR")" | tr "\\n" " "'
    task = start_task(nerd, queue, "--", "sh", "-c", script)

    nerd.ok("worker", "work", queue, "--once", timeout_s=120)

    # Not stdout.log and stderr.log, which the worker reads and ships.
    assert nerd.ok("task", "logs", queue, task).stdout == "input output stdin work "


def test_task_stop_kills_the_running_task(nerd: Shell, tmp_path: Path) -> None:
    queue = nerd.json("queue", "create")["id"]
    pid_file = tmp_path / "task.pid"
    env = f"PID_FILE={pid_file}"
    task = start_task(nerd, queue, "-e", env, "--", sys.executable, "-c", SLOW_TASK)
    nerd.json("worker", "start", queue)
    wait_until(pid_file.exists)

    stopped = nerd.json("task", "stop", queue, task)

    assert stopped["status"] == "STOPPED"
    wait_until(lambda: not is_running_with_env(env), timeout_s=20)


def test_deleting_a_queue_kills_its_running_task_and_keeps_no_output(
    nerd: Shell, tmp_path: Path
) -> None:
    queue = nerd.json("queue", "create")["id"]
    pid_file = tmp_path / "task.pid"
    env = f"PID_FILE={pid_file}"
    task = start_task(nerd, queue, "-e", env, "--", sys.executable, "-c", SLOW_TASK)
    worker_pid = nerd.json("worker", "start", queue)["pids"][0]
    wait_until(pid_file.exists)

    nerd.ok("queue", "delete", queue)

    wait_until(lambda: not is_running_with_env(env), timeout_s=20)
    # Its queue gone, the worker has nothing left to do and signs off.
    wait_until(lambda: not is_worker(worker_pid), timeout_s=30)
    names = [d["name"] for d in nerd.json("dataset", "list")]
    assert f"output of {task}" not in names


def test_worker_logs_prints_what_a_background_worker_logged(nerd: Shell) -> None:
    queue = nerd.json("queue", "create")["id"]
    task = start_task(nerd, queue, "--", "true")
    nerd.json("worker", "start", queue)
    wait_until(lambda: nerd.json("task", "describe", task)["status"] == "SUCCESS")
    worker = nerd.json("task", "describe", task)["worker"]

    logged = nerd.ok("worker", "logs", worker)

    assert f"task.succeeded task={task}" in logged.stdout


def test_worker_work_on_an_unknown_queue_exits_3(nerd: Shell) -> None:
    done = nerd("worker", "work", "q-0123456789abcdef", "--once")

    assert done.exit_code == 3
    assert done.stderr.startswith("nerd: error:")


def test_worker_work_on_a_malformed_queue_id_exits_2(nerd: Shell) -> None:
    done = nerd("worker", "work", "d-0123456789abcdef")

    assert done.exit_code == 2
    assert "not a queue id" in done.stderr
