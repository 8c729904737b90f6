"""The main example, ``examples/digits_sweep/run.py``, end to end as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import NERD_ENV

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits_sweep" / "run.py"
RESULT_ROW = re.compile(
    r"^\s+\d+\s+\S+\s+\S+\s+0\.\d{4} ± 0\.\d{4}\s+\S+\s+t-[0-9a-f]+$"
)


def run_example(work_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in NERD_ENV}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--work-dir", str(work_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def result_rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if RESULT_ROW.match(line)]


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("digits")


@pytest.fixture(scope="module")
def first_run(work_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_example(work_dir)


def test_the_sweep_runs_every_task_and_prints_results_best_first(
    first_run: subprocess.CompletedProcess[str],
) -> None:
    rows = result_rows(first_run.stdout)
    accuracies = [float(row.split()[3]) for row in rows]

    assert first_run.returncode == 0, first_run.stderr
    assert len(rows) == 8
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies[0] > 0.95
    upload = (
        r"^upload +[\d.]+ KiB in +[\d.]+ s  \([\d.]+ [KM]iB/s, with the CLI's start\)$"
    )
    assert re.search(upload, first_run.stdout, re.MULTILINE)
    assert re.search(r"^download +[\d.]+ [K]?i?B in", first_run.stdout, re.MULTILINE)
    assert re.search(
        r"^sweep .* wall time for 8 tasks$", first_run.stdout, re.MULTILINE
    )


def test_the_outputs_are_downloaded_one_folder_per_task(
    first_run: subprocess.CompletedProcess[str], work_dir: Path
) -> None:
    (queue_folder,) = (work_dir / "outputs").iterdir()

    metrics = sorted(queue_folder.rglob("metrics.json"))

    assert first_run.returncode == 0, first_run.stderr
    assert len(metrics) == 8
    assert len({path.parent for path in metrics}) == 8


def test_a_second_run_in_the_same_folder_works_too(
    first_run: subprocess.CompletedProcess[str], work_dir: Path
) -> None:
    second = run_example(work_dir)

    assert second.returncode == 0, second.stderr
    assert len(result_rows(second.stdout)) == 8
    assert len(list((work_dir / "outputs").iterdir())) == 2
