"""The process runtime: environment, stdin, exit codes, logs, kills and the sandbox."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from nerd.errors import UsageError
from nerd.worker.logs import tail_text
from nerd.worker.runtimes.process import (
    ProcessRuntime,
    RunSpec,
    private_paths,
    wait_for_group_exit,
)
from nerd.worker.staging import make_read_only

HAS_BWRAP = shutil.which("bwrap") is not None
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bwrap is not installed")

PRINT_ENV = "import os, sys; print(os.environ.get(sys.argv[1], '<unset>'))"


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def run_to_end(spec: RunSpec, run_dir: Path, *, use_bwrap: bool = False) -> int:
    process = ProcessRuntime(use_bwrap=use_bwrap).start(spec, run_dir)
    exit_code = process.wait(30)
    assert exit_code is not None
    return exit_code


def stdout_of(run_dir: Path) -> str:
    return (run_dir / "stdout.log").read_text()


@pytest.fixture
def input_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "staged"
    folder.mkdir()
    (folder / "data.txt").write_text("input bytes")
    make_read_only(folder)
    yield folder
    folder.chmod(0o755)


def test_task_sees_its_input_output_and_task_id_in_env(
    tmp_path: Path, input_dir: Path
) -> None:
    names = ["NERD_INPUT_DIR", "NERD_OUTPUT_DIR", "NERD_TASK_ID"]
    code = f"import os; print(*(os.environ[k] for k in {names!r}))"
    spec = RunSpec("t-00000001", python(code), input_dir=input_dir)

    exit_code = run_to_end(spec, tmp_path / "run")

    assert exit_code == 0
    run_dir = tmp_path / "run"
    expected = f"{input_dir} {run_dir / 'output'} t-00000001\n"
    assert stdout_of(run_dir) == expected


def test_task_env_is_added_to_the_environment(tmp_path: Path) -> None:
    spec = RunSpec("t-00000001", python(PRINT_ENV, "GAMMA"), env={"GAMMA": "0.001"})

    run_to_end(spec, tmp_path / "run")

    assert stdout_of(tmp_path / "run") == "0.001\n"


def test_worker_tokens_are_not_passed_to_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERD_JWT", "secret-access")
    monkeypatch.setenv("NERD_JWT_REFRESH_TOKEN", "secret-refresh")
    code = "import os; print(sorted(k for k in os.environ if k.startswith('NERD_JWT')))"

    run_to_end(RunSpec("t-00000001", python(code)), tmp_path / "run")

    assert stdout_of(tmp_path / "run") == "[]\n"


def test_stdin_is_fed_to_the_command(tmp_path: Path) -> None:
    code = "import sys; print(sys.stdin.read().upper())"
    spec = RunSpec("t-00000001", python(code), stdin=b"hello from stdin")

    run_to_end(spec, tmp_path / "run")

    assert stdout_of(tmp_path / "run") == "HELLO FROM STDIN\n"


def test_without_stdin_the_command_reads_end_of_file(tmp_path: Path) -> None:
    code = "import sys; print(repr(sys.stdin.read()))"

    run_to_end(RunSpec("t-00000001", python(code)), tmp_path / "run")

    assert stdout_of(tmp_path / "run") == "''\n"


def test_nonzero_exit_code_is_returned(tmp_path: Path) -> None:
    spec = RunSpec("t-00000001", python("raise SystemExit(3)"))

    assert run_to_end(spec, tmp_path / "run") == 3


def test_a_command_killed_by_a_signal_exits_128_plus_the_signal(
    tmp_path: Path,
) -> None:
    spec = RunSpec("t-00000001", python("import os, signal; os.kill(os.getpid(), 9)"))

    assert run_to_end(spec, tmp_path / "run") == 137


def test_stderr_tail_keeps_the_last_2_kib(tmp_path: Path) -> None:
    code = "import sys; sys.stderr.write('x' * 5000 + 'THE END')"
    run_to_end(RunSpec("t-00000001", python(code)), tmp_path / "run")

    tail = tail_text(tmp_path / "run" / "stderr.log")

    assert len(tail) == 2048
    assert tail.endswith("xTHE END")


def test_command_runs_in_a_fresh_work_dir(tmp_path: Path) -> None:
    code = "import os; print(os.getcwd(), os.listdir('.'))"

    run_to_end(RunSpec("t-00000001", python(code)), tmp_path / "run")

    assert stdout_of(tmp_path / "run") == f"{tmp_path / 'run' / 'work'} []\n"


def test_unknown_command_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    spec = RunSpec("t-00000001", ["no-such-command-xyz", "arg"])

    with pytest.raises(UsageError, match="command not found: no-such-command-xyz"):
        ProcessRuntime(use_bwrap=False).start(spec, tmp_path / "run")


def test_command_that_cannot_be_executed_is_a_usage_error(tmp_path: Path) -> None:
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("echo hi\n")
    spec = RunSpec("t-00000001", [str(not_executable)])

    with pytest.raises(
        UsageError, match=r"cannot start .*script\.sh: Permission denied"
    ):
        ProcessRuntime(use_bwrap=False).start(spec, tmp_path / "run")


def test_asking_for_bwrap_without_it_on_the_path_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(UsageError, match="bwrap is not on the PATH"):
        ProcessRuntime(use_bwrap=True)


def test_kill_takes_down_the_whole_process_group(tmp_path: Path) -> None:
    # The command starts a grandchild that ignores SIGTERM: only SIGKILL ends it.
    code = (
        "import subprocess, sys, time;"
        "subprocess.Popen([sys.executable, '-c', 'import signal, time;"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True);"
        "time.sleep(60)']); time.sleep(60)"
    )
    runtime = ProcessRuntime(use_bwrap=False, kill_grace_s=0.5)
    process = runtime.start(RunSpec("t-00000001", python(code)), tmp_path / "run")
    wait_for_output(tmp_path / "run" / "stdout.log")

    started = time.monotonic()
    exit_code = process.kill()

    assert exit_code == 128 + 15
    assert wait_for_group_exit(process.pid, 5)
    assert time.monotonic() - started < 5


def test_children_left_behind_are_killed_when_the_command_exits(
    tmp_path: Path,
) -> None:
    code = (
        "import subprocess, sys;"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(p.pid, flush=True)"
    )
    process = ProcessRuntime(use_bwrap=False).start(
        RunSpec("t-00000001", python(code)), tmp_path / "run"
    )

    assert process.wait(30) == 0
    assert wait_for_group_exit(process.pid, 5)


def wait_for_output(path: Path, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} stayed empty")


@needs_bwrap
def test_under_bwrap_writing_to_the_input_fails_even_for_root(
    tmp_path: Path, input_dir: Path
) -> None:
    code = (
        "import os; p = os.path.join(os.environ['NERD_INPUT_DIR'], 'data.txt');"
        "open(p, 'a').write('tampered')"
    )
    # Modes that let the owner write: only the read-only mount stands in the way.
    (input_dir / "data.txt").chmod(0o644)
    spec = RunSpec("t-00000001", python(code), input_dir=input_dir)

    exit_code = run_to_end(spec, tmp_path / "run", use_bwrap=True)

    assert exit_code == 1
    assert "Read-only file system" in tail_text(tmp_path / "run" / "stderr.log")
    input_dir.chmod(0o755)
    assert (input_dir / "data.txt").read_text() == "input bytes"


@needs_bwrap
def test_under_bwrap_input_and_output_are_also_at_slash_input_and_output(
    tmp_path: Path, input_dir: Path
) -> None:
    code = (
        "print(open('/input/data.txt').read()); open('/output/r.txt', 'w').write('ok')"
    )
    spec = RunSpec("t-00000001", python(code), input_dir=input_dir)

    exit_code = run_to_end(spec, tmp_path / "run", use_bwrap=True)

    assert exit_code == 0
    assert stdout_of(tmp_path / "run") == "input bytes\n"
    assert (tmp_path / "run" / "output" / "r.txt").read_text() == "ok"
    assert not Path("/input").exists()


# Tries the file named in argv[1], then reads the input and writes an output.
PEEK_THEN_WORK = (
    "import os, sys\n"
    "try: print(open(sys.argv[1]).read())\n"
    "except OSError as exc: print('hidden', type(exc).__name__)\n"
    "print(open(os.path.join(os.environ['NERD_INPUT_DIR'], 'data.txt')).read())\n"
    "open(os.path.join(os.environ['NERD_OUTPUT_DIR'], 'r.txt'), 'w').write('ok')\n"
)


def staged_in_the_cache(home: Path) -> Path:
    folder = home / ".nerd" / "cache" / "datasets" / "d-0123456789abcdef"
    folder.mkdir(parents=True)
    (folder / "data.txt").write_text("input bytes")
    make_read_only(folder)
    return folder


def write_session(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"jwt": {"token": "a-full-user-token"}}')


def peek_under_bwrap(tmp_path: Path, home: Path, session: Path) -> str:
    """Run PEEK_THEN_WORK under bwrap on input staged in the cache; its stdout."""
    input_dir = staged_in_the_cache(home)
    argv = python(PEEK_THEN_WORK, str(session))
    spec = RunSpec("t-00000001", argv, input_dir=input_dir)
    try:
        exit_code = run_to_end(spec, tmp_path / "run", use_bwrap=True)
    finally:
        input_dir.chmod(0o755)
    assert exit_code == 0, tail_text(tmp_path / "run" / "stderr.log")
    return stdout_of(tmp_path / "run")


@needs_bwrap
def test_under_bwrap_a_task_cannot_read_the_session_but_sees_its_cached_input(
    tmp_path: Path, home: Path
) -> None:
    session = home / ".nerd" / "session.json"
    write_session(session)

    stdout = peek_under_bwrap(tmp_path, home, session)

    assert stdout == "hidden FileNotFoundError\ninput bytes\n"
    assert (tmp_path / "run" / "output" / "r.txt").read_text() == "ok"
    assert "a-full-user-token" in session.read_text()


@needs_bwrap
def test_under_bwrap_a_session_file_kept_elsewhere_is_hidden_too(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = tmp_path / "elsewhere" / "session.json"
    write_session(session)
    monkeypatch.setenv("NERD_SESSION_FILE", str(session))

    stdout = peek_under_bwrap(tmp_path, home, session)

    assert stdout == "hidden FileNotFoundError\ninput bytes\n"


UNDO_THE_SANDBOX = """
import subprocess, sys
status = open("/proc/self/status").read().splitlines()
print(*[line for line in status if line.startswith(("CapPrm", "CapEff"))])
for undo in (["mount", "-o", "remount,rw,bind", sys.argv[1]], ["umount", sys.argv[2]]):
    done = subprocess.run(undo, capture_output=True)
    print(undo[0], "refused" if done.returncode else "worked")
"""


@needs_bwrap
def test_under_bwrap_a_root_task_has_no_capabilities_to_undo_the_sandbox(
    tmp_path: Path, home: Path, input_dir: Path
) -> None:
    (home / ".nerd").mkdir(exist_ok=True)
    argv = python(UNDO_THE_SANDBOX, str(input_dir), str(home / ".nerd"))
    spec = RunSpec("t-00000001", argv, input_dir=input_dir)

    exit_code = run_to_end(spec, tmp_path / "run", use_bwrap=True)

    assert exit_code == 0, tail_text(tmp_path / "run" / "stderr.log")
    assert stdout_of(tmp_path / "run").splitlines() == [
        "CapPrm:\t0000000000000000 CapEff:\t0000000000000000",
        "mount refused",
        "umount refused",
    ]


@needs_bwrap
def test_under_bwrap_the_paths_the_server_named_are_hidden(
    tmp_path: Path, home: Path
) -> None:
    server_data = tmp_path / "server"
    server_data.mkdir()
    (server_data / "admin-password").write_text("secret")
    code = (
        "import os, sys; print(os.listdir(sys.argv[1]),"
        " os.path.exists(os.path.join(sys.argv[1], 'admin-password')))"
    )
    runtime = ProcessRuntime(use_bwrap=True)
    runtime.server_paths = [server_data, home]
    spec = RunSpec("t-00000001", python(code, str(server_data)))

    process = runtime.start(spec, tmp_path / "run")

    assert process.wait(30) == 0, tail_text(tmp_path / "run" / "stderr.log")
    assert stdout_of(tmp_path / "run") == "[] False\n"
    # The home folder itself is never covered, even when the server names it.
    assert home.resolve() not in private_paths([home])


WRITE_AROUND = """
import sys
for path in sys.argv[1:]:
    try:
        with open(path, "w") as file:
            file.write("x")
        print(path, "written")
    except OSError as exc:
        print(path, exc.strerror)
"""


@needs_bwrap
def test_under_bwrap_a_task_writes_only_its_folders_and_tmp(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch.txt"
    probes = ["/etc/nerd-probe", "/proc/sys/kernel/core_pattern", str(scratch)]
    spec = RunSpec("t-00000001", python(WRITE_AROUND, *probes))

    exit_code = run_to_end(spec, tmp_path / "run", use_bwrap=True)

    assert exit_code == 0, tail_text(tmp_path / "run" / "stderr.log")
    assert stdout_of(tmp_path / "run").splitlines() == [
        "/etc/nerd-probe Read-only file system",
        "/proc/sys/kernel/core_pattern Read-only file system",
        f"{scratch} written",
    ]
    assert not Path("/etc/nerd-probe").exists()


@needs_bwrap
def test_under_bwrap_a_run_in_the_nerd_folder_sees_only_its_own_folders(
    tmp_path: Path, home: Path
) -> None:
    runs = home / ".nerd" / "runs"
    other = ProcessRuntime(use_bwrap=True).start(
        RunSpec("t-00000002", ["sleep", "30"], stdin=b"the other task's stdin"),
        runs / "other",
    )
    code = (
        "import os, sys; run = os.path.dirname(os.environ['NERD_OUTPUT_DIR']);"
        "print(sorted(os.listdir(run)), sorted(os.listdir(sys.argv[1])));"
        "os.symlink('/etc/hostname', os.path.join(run, 'stdout.log'))"
    )
    spec = RunSpec("t-00000001", python(code, str(runs)))

    try:
        exit_code = run_to_end(spec, runs / "mine", use_bwrap=True)
    finally:
        other.kill()

    # The link went into the sandbox's own empty copy of the folder, not the host's.
    assert exit_code == 0, tail_text(runs / "mine" / "stderr.log")
    assert not (runs / "mine" / "stdout.log").is_symlink()
    assert stdout_of(runs / "mine") == (
        "['input', 'output', 'stdin', 'work'] ['mine']\n"
    )


@needs_bwrap
def test_under_bwrap_a_hidden_folder_in_tmp_cannot_be_moved_from_under_its_cover(
    tmp_path: Path,
) -> None:
    server_data = tmp_path / "above" / "data"
    server_data.mkdir(parents=True)
    (server_data / "admin-password").write_text("secret")
    code = (
        "import os, sys\n"
        "for old in sys.argv[1:]:\n"
        "    try: os.rename(old, old + '.moved'); print('moved')\n"
        "    except OSError as exc: print(exc.strerror)"
    )
    runtime = ProcessRuntime(use_bwrap=True)
    runtime.server_paths = [server_data]
    targets = [str(tmp_path / "above"), str(server_data), str(tmp_path)]
    spec = RunSpec("t-00000001", python(code, *targets))

    process = runtime.start(spec, tmp_path / "above" / "run")

    assert process.wait(30) == 0, tail_text(tmp_path / "above" / "run" / "stderr.log")
    assert (
        stdout_of(tmp_path / "above" / "run").splitlines()
        == ["Device or resource busy"] * 3
    )
    assert (server_data / "admin-password").read_text() == "secret"


@needs_bwrap
def test_under_bwrap_the_process_group_kill_still_works(tmp_path: Path) -> None:
    runtime = ProcessRuntime(use_bwrap=True, kill_grace_s=0.5)
    spec = RunSpec(
        "t-00000001", python("print(1, flush=True); import time; time.sleep(60)")
    )
    process = runtime.start(spec, tmp_path / "run")
    wait_for_output(tmp_path / "run" / "stdout.log")

    exit_code = process.kill()

    assert exit_code in (128 + 15, 128 + 9)
    assert wait_for_group_exit(process.pid, 5)


def test_without_bwrap_the_input_is_only_protected_by_its_modes(
    tmp_path: Path, input_dir: Path
) -> None:
    mode = os.stat(input_dir / "data.txt").st_mode & 0o777

    assert mode == 0o444
    assert os.stat(input_dir).st_mode & 0o777 == 0o555
