"""What a container task costs over a process task: start to exit of ``true``.

    CONTAINERS_CONF=/path/containers.conf .venv/bin/python bench/container_startup.py

Runs a trivial task N times with each runtime the worker has (process, podman, and
docker when ``DOCKER_HOST`` names a socket), the way the worker runs it: lay out the
run folder, start, wait, and (for containers) remove the container. The image is a
one-binary busybox root file system imported here, so no pull is timed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nerd.worker.runtimes.container import ContainerSpec
from nerd.worker.runtimes.process import ProcessRuntime, RunSpec
from nerd.worker.staging import remove_tree

BUSYBOX = "/bin/busybox"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        image = _import_image(Path(folder))
        try:
            for name, run_once in _runtimes(image):
                _report(name, [run_once(Path(folder)) for _ in range(args.runs)])
        finally:
            subprocess.run(["podman", "rmi", "-f", image], capture_output=True)


def _runtimes(image: str) -> list[tuple[str, object]]:
    from nerd.worker.runtimes.podman import PodmanRuntime

    found: list[tuple[str, object]] = [
        ("process (bwrap)", _timer(ProcessRuntime(), None)),
        ("process (plain)", _timer(ProcessRuntime(use_bwrap=False), None)),
        ("podman", _timer(PodmanRuntime(), image)),
    ]
    if os.environ.get("DOCKER_HOST"):
        from nerd.worker.runtimes.docker import DockerRuntime

        found.append(("docker API", _timer(DockerRuntime(), image)))
    return found


def _timer(runtime: object, image: str | None) -> object:
    def run_once(folder: Path) -> float:
        run_dir = Path(tempfile.mkdtemp(dir=folder))
        argv = ["true"] if image else ["/bin/true"]
        spec = RunSpec(task_id="t-00000000bench", argv=argv)
        started = time.perf_counter()
        if image is None:
            process = runtime.start(spec, run_dir)  # type: ignore[attr-defined]
        else:
            process = runtime.start(spec, run_dir, ContainerSpec(image=image))  # type: ignore[attr-defined]
        code = process.wait()
        if hasattr(process, "close"):
            process.close()
        elapsed = time.perf_counter() - started
        assert code == 0, (code, (run_dir / "stderr.log").read_text())
        remove_tree(run_dir)
        return elapsed

    return run_once


def _import_image(folder: Path) -> str:
    root = folder / "rootfs"
    (root / "bin").mkdir(parents=True)
    for name in ("input", "output", "tmp"):
        (root / name).mkdir()
    (root / "bin" / "busybox").write_bytes(Path(BUSYBOX).read_bytes())
    (root / "bin" / "busybox").chmod(0o755)
    for applet in ("sh", "true"):
        (root / "bin" / applet).symlink_to("busybox")
    tarball = folder / "rootfs.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
    tag = f"localhost/nerd-bench:{secrets.token_hex(4)}"
    subprocess.run(
        ["podman", "import", str(tarball), tag], check=True, capture_output=True
    )
    return tag


def _report(name: str, seconds: list[float]) -> None:
    median = statistics.median(seconds) * 1000
    worst = max(seconds) * 1000
    print(
        f"{name:16} median {median:7.1f} ms   max {worst:7.1f} ms   runs {len(seconds)}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
