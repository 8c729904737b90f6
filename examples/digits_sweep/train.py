"""One task of the sweep: cross-validate an SVC on the digits for one (gamma, C).

Reads ``$NERD_INPUT_DIR/digits.csv`` (written by ``run.py``), writes
``$NERD_OUTPUT_DIR/metrics.json``, and prints one summary line last, which the worker
reports as the task's result.

    python train.py --gamma 0.001 --C 10 [--folds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import cross_val_score
from sklearn.svm import SVC


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gamma", type=float, required=True)
    parser.add_argument("--C", type=float, required=True)
    parser.add_argument("--folds", type=int, default=5)
    return parser.parse_args(argv)


def load_digits_csv(input_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 images as 64 features, and their labels (the last column)."""
    table = np.loadtxt(input_dir / "digits.csv", delimiter=",", skiprows=1)
    return table[:, :-1], table[:, -1].astype(int)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    input_dir = Path(os.environ["NERD_INPUT_DIR"])
    output_dir = Path(os.environ["NERD_OUTPUT_DIR"])
    features, labels = load_digits_csv(input_dir)
    print(f"loaded {len(labels)} digits from {input_dir}", flush=True)

    started = time.perf_counter()
    model = SVC(gamma=args.gamma, C=args.C)
    scores = cross_val_score(model, features, labels, cv=args.folds)
    duration_s = time.perf_counter() - started

    metrics = {
        "gamma": args.gamma,
        "C": args.C,
        "folds": args.folds,
        "accuracy": float(scores.mean()),
        "accuracy_std": float(scores.std()),
        "fold_accuracies": [float(score) for score in scores],
        "train_s": round(duration_s, 3),
        "task": os.environ.get("NERD_TASK_ID", ""),
    }
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"gamma={args.gamma:g} C={args.C:g} accuracy={metrics['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
