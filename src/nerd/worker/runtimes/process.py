"""The ``process`` runtime: a task's command runs on the host, in a session of its own.

A run folder holds everything one run needs::

    <run_dir>/work         the command's working directory
    <run_dir>/output       NERD_OUTPUT_DIR: what the task writes here is its output
    <run_dir>/input        an empty NERD_INPUT_DIR, when the queue has no input dataset
    <run_dir>/stdin        the task's stdin, when it has one
    <run_dir>/stdout.log   what the command printed, shipped as logs by the worker
    <run_dir>/stderr.log

When ``bwrap`` (bubblewrap) is on the PATH the command runs under it, because we
often run as root and root ignores file modes. The host's folders are bound read-only
except ``SCRATCH_PATHS`` and the run's output and work folders, and the task has no
capabilities. Bubblewrap's new root is a tmpfs; we
bind every top-level entry of the host's root into it, so ``/input`` (read-only) and
``/output`` can be added as mount points without creating anything in the host's root.
The input folder is also bound read-only at its own path, so ``NERD_INPUT_DIR`` works
the same inside and outside. The nerd folder of the worker's user (``~/.nerd``: the
session with a full user token, the config, the logs) is covered by an empty tmpfs,
and so is the folder of a session or config file kept elsewhere; the input, output and
work folders are then bound back, so a staged input in ``~/.nerd/cache`` still shows.
Without bwrap the staged input is only chmod'ed read-only, which stops every user but
root, and nothing is hidden.

Under bwrap the command also runs in a PID namespace of its own, behind a lifeline:
a pipe whose only write end the worker holds. When the run ends, or the worker dies
however hard, the pipe closes and every process left in the namespace is killed
(see ``SANDBOX_GUARD``). Without bwrap, a task's processes outlive a worker that was
SIGKILLed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from nerd import config as nerd_config
from nerd.errors import UsageError

log = logging.getLogger(__name__)

SECRET_ENV = ("NERD_JWT", "NERD_JWT_REFRESH_TOKEN")
SIGNAL_EXIT_BASE = 128
COMMAND_NOT_FOUND_EXIT = 127
SANDBOX_INPUT = "/input"
SANDBOX_OUTPUT = "/output"
# The host folders a task may write besides its output and work folders.
SCRATCH_PATHS = ("/tmp", "/var/tmp")
PROC_KERNEL_KNOBS = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")

# The shell that runs the task's command inside bwrap's PID namespace. Its stdin is
# the lifeline's read end, and the task's own stdin file comes by path ($1). A
# background subshell waits for the lifeline to close, then SIGKILLs every process
# in the namespace, even those that started sessions of their own. bwrap's
# --die-with-parent is not enough alone: it is armed only once bwrap has set the
# namespace up, so a worker killed while bwrap was starting left the sandbox running
# for good. Only inside the sandbox is /proc/1 bwrap: the check keeps the kill there.
SANDBOX_GUARD = """\
exec 3<&0 <"$1"; shift
(
  read -r _ <&3
  read -r init </proc/1/comm
  [ "$init" = bwrap ] && kill -s KILL -- -1
) &
exec "$@" 3<&-
"""


@dataclass(frozen=True)
class RunSpec:
    """What to run: the task's argv, its env and stdin, and the staged input folder."""

    task_id: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    input_dir: Path | None = None


@dataclass(frozen=True)
class RunPaths:
    """The folders and files of one run (see the module docstring)."""

    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def empty_input(self) -> Path:
        return self.root / "input"

    @property
    def stdin(self) -> Path:
        return self.root / "stdin"

    @property
    def stdout_log(self) -> Path:
        return self.root / "stdout.log"

    @property
    def stderr_log(self) -> Path:
        return self.root / "stderr.log"


class ProcessRuntime:
    """Starts commands as host processes, under bubblewrap when it is available."""

    name = "process"

    def __init__(
        self, *, use_bwrap: bool | None = None, kill_grace_s: float = 5.0
    ) -> None:
        found = shutil.which("bwrap")
        if use_bwrap and not found:
            raise UsageError("bwrap is not on the PATH", hint="install bubblewrap")
        self.bwrap = found if use_bwrap is not False else None
        self.kill_grace_s = kill_grace_s
        # The server's own files on this host, which it named when the worker
        # registered: hidden from tasks like the worker user's nerd folder.
        self.server_paths: list[Path] = []

    def start(self, spec: RunSpec, run_dir: Path) -> RunningProcess:
        """Lay out ``run_dir`` and start the command; UsageError if it cannot start."""
        paths = _make_run_dir(run_dir, spec.stdin)
        input_dir = spec.input_dir or paths.empty_input
        env = task_environment(spec, input_dir, paths.output)
        argv = [_resolve_command(spec.argv[0], env), *spec.argv[1:]]
        if not self.bwrap:
            popen = _spawn(argv, env, paths)
            lifeline = None
        else:
            prefix = bwrap_prefix(self.bwrap, input_dir, paths, self.server_paths)
            guard = ["/bin/sh", "-c", SANDBOX_GUARD, "nerd-sandbox", str(paths.stdin)]
            argv = [*prefix, *guard, *argv]
            popen, lifeline = _spawn_with_lifeline(argv, env, paths)
        log.debug(
            "process started task=%s pid=%s argv=%s", spec.task_id, popen.pid, argv
        )
        return RunningProcess(
            popen, paths, kill_grace_s=self.kill_grace_s, lifeline=lifeline
        )


class RunningProcess:
    """A started command: its exit code, and a kill that takes its whole group."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        paths: RunPaths,
        *,
        kill_grace_s: float,
        lifeline: int | None = None,
    ) -> None:
        self._popen = popen
        self.paths = paths
        self.kill_grace_s = kill_grace_s
        self._lifeline = lifeline
        self._exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        """The exit code once the command ended (128+N if killed by signal N)."""
        code = self._popen.poll()
        return None if code is None else self._finish(code)

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait up to ``timeout_s`` for the command; its exit code, or None."""
        try:
            code = self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None
        return self._finish(code)

    def kill(self) -> int:
        """SIGTERM the process group, SIGKILL it after a grace period; its exit code."""
        _signal_group(self.pid, signal.SIGTERM)
        code = self.wait(self.kill_grace_s)
        if code is not None:
            return code
        _signal_group(self.pid, signal.SIGKILL)
        return self._finish(self._popen.wait())

    def _finish(self, returncode: int) -> int:
        if self._exit_code is None:
            # Children the command left behind would keep writing to the output.
            _signal_group(self.pid, signal.SIGKILL)
            if self._lifeline is not None:
                os.close(self._lifeline)
                self._lifeline = None
            self._exit_code = exit_code_of(returncode)
        return self._exit_code


def exit_code_of(returncode: int) -> int:
    """Popen's returncode as a shell would report it: -N (signal N) becomes 128+N."""
    return SIGNAL_EXIT_BASE - returncode if returncode < 0 else returncode


def task_environment(
    spec: RunSpec, input_dir: Path, output_dir: Path
) -> dict[str, str]:
    """The worker's environment without its tokens, plus the task's env and nerd's."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update(spec.env)
    env["NERD_INPUT_DIR"] = str(input_dir)
    env["NERD_OUTPUT_DIR"] = str(output_dir)
    env["NERD_TASK_ID"] = spec.task_id
    return env


def bwrap_prefix(
    bwrap: str, input_dir: Path, paths: RunPaths, server_paths: Sequence[Path] = ()
) -> list[str]:
    """The bubblewrap command line that runs a command with the input read-only, and
    the worker user's nerd files and the server's ``server_paths`` out of sight."""
    # A PID namespace: when bwrap dies (say the worker was SIGKILLed), the kernel ends
    # every process the task started, not only bwrap's direct child.
    args = [bwrap, "--die-with-parent", "--unshare-pid"]
    # Root keeps every capability under bwrap unless told otherwise; with them a task
    # could remount its input read-write or unmount what hides the session.
    args += ["--cap-drop", "ALL"]
    for entry in sorted(Path("/").iterdir()):
        args += _root_entry_binds(entry)
    hidden = private_paths(server_paths)
    args += _each("--bind", _pinned_folders(hidden))
    for private in hidden:
        args += _hiding(private)
    # After the hiding, so that a run folder or staged input inside it shows again.
    args += ["--ro-bind", str(input_dir), str(input_dir)]
    args += ["--bind", str(paths.output), str(paths.output)]
    args += ["--bind", str(paths.work), str(paths.work)]
    args += ["--ro-bind", str(paths.stdin), str(paths.stdin)]
    args += ["--ro-bind", str(input_dir), SANDBOX_INPUT]
    args += ["--bind", str(paths.output), SANDBOX_OUTPUT]
    return [*args, "--"]


def private_paths(server_paths: Sequence[Path] = ()) -> list[Path]:
    """What a task must not see: the nerd folder, and the session and config files'
    folders (or, in the home folder itself, the files alone); and the paths the
    server named, unless one is the home folder or above it."""
    files = [nerd_config.session_path(), nerd_config.config_path()]
    paths = [nerd_config.nerd_home(), *(_cover_for(f) for f in files if f)]
    paths += [p for p in server_paths if not _is_home_or_above(p)]
    found: list[Path] = []
    for path in paths:
        real = path.resolve()
        if real.exists() and not any(real.is_relative_to(f) for f in found):
            found = [f for f in found if not f.is_relative_to(real)] + [real]
    return found


def _cover_for(file: Path) -> Path:
    folder = file.resolve().parent
    return file if _is_home_or_above(folder) else folder


def _is_home_or_above(path: Path) -> bool:
    """Covering the home folder, or one above it, would hide what tasks rightly use."""
    home = Path.home().resolve()
    return path.resolve() in (home, *home.parents)


def _hiding(path: Path) -> list[str]:
    if path.is_dir():
        return ["--tmpfs", str(path)]
    return ["--ro-bind", "/dev/null", str(path)]


def _root_entry_binds(entry: Path) -> list[str]:
    path = str(entry)
    if path in (SANDBOX_INPUT, SANDBOX_OUTPUT):
        return []
    if entry.is_symlink():
        return ["--symlink", os.readlink(entry), path]
    if path == "/dev":
        return ["--dev", "/dev"]
    if path == "/proc":
        # Without capabilities bwrap no longer covers these itself, and root's mode
        # bits would let a task set kernel knobs such as core_pattern.
        kernel = [p for p in PROC_KERNEL_KNOBS if Path(p).exists()]
        return ["--proc", "/proc", *_each("--ro-bind", kernel)]
    if path in SCRATCH_PATHS:
        return ["--bind", path, path]
    # Read-only, so that a task cannot change what the host runs next (the nerd
    # environment, /usr, /etc, a login script).
    return ["--ro-bind", path, path, *_each("--bind", _scratch_under(entry))]


def _pinned_folders(hidden: Sequence[Path]) -> list[str]:
    """The folders between a scratch folder and a hidden path, parents first.

    Each is bound onto itself: a mount point cannot be renamed, so a task cannot move
    a hidden folder (say a server's data in /tmp) away from the path its cover is on,
    where the next task would find it uncovered."""
    pinned: set[Path] = set()
    for path in hidden:
        for scratch in map(Path, SCRATCH_PATHS):
            if path.is_relative_to(scratch):
                between = path.relative_to(scratch).parents
                pinned.update(scratch / p for p in between if p != Path("."))
    return [str(p) for p in sorted(pinned, key=lambda p: len(p.parts))]


def _each(option: str, paths: Sequence[str]) -> list[str]:
    return [arg for path in paths for arg in (option, path, path)]


def _scratch_under(entry: Path) -> list[str]:
    return [p for p in SCRATCH_PATHS if Path(p).parent == entry and Path(p).is_dir()]


def _make_run_dir(run_dir: Path, stdin: bytes | None) -> RunPaths:
    paths = RunPaths(run_dir)
    for folder in (paths.work, paths.output, paths.empty_input):
        folder.mkdir(parents=True, exist_ok=True)
    paths.empty_input.chmod(0o555)
    paths.stdin.write_bytes(stdin or b"")
    return paths


def _resolve_command(command: str, env: Mapping[str, str]) -> str:
    if "/" in command:
        return command
    found = shutil.which(command, path=env.get("PATH", os.defpath))
    if found is None:
        raise UsageError(f"command not found: {command}")
    return found


def _spawn(
    argv: list[str], env: dict[str, str], paths: RunPaths, stdin: int | None = None
) -> subprocess.Popen[bytes]:
    with (
        open(paths.stdin if stdin is None else stdin, "rb") as stdin_file,
        paths.stdout_log.open("wb") as stdout,
        paths.stderr_log.open("wb") as stderr,
    ):
        return _popen(argv, env, paths.work, (stdin_file, stdout, stderr))


def _spawn_with_lifeline(
    argv: list[str], env: dict[str, str], paths: RunPaths
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the command with a pipe's read end as its stdin; the pipe's write end.

    The write end is not inheritable, so only this process holds it."""
    read_end, write_end = os.pipe()
    try:
        return _spawn(argv, env, paths, stdin=read_end), write_end
    except BaseException:
        os.close(write_end)
        raise


def _popen(
    argv: list[str], env: dict[str, str], cwd: Path, stdio: tuple[IO[bytes], ...]
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            start_new_session=True,
        )
    except OSError as exc:
        raise UsageError(f"cannot start {argv[0]}: {exc.strerror}") from exc


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_for_group_exit(pgid: int, timeout_s: float) -> bool:
    """True once no process of the group is left (for tests and shutdown checks)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
