"""``python -m nerd.worker QUEUE [COMMAND_TEMPLATE…]``: a worker with no CLI around it.

This is what ``nerd worker start`` launches in the background. It builds its client
from the environment: ``NERD_JWT`` / ``NERD_JWT_REFRESH_TOKEN`` (a worker token),
``NERD_CONFIG_JSON`` (where the server is, and its public key) and ``NERD_PROJECT``.
``-v`` or ``NERD_DEBUG`` adds debug lines to its log.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from nerd import errors

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
QUIET_LOGGERS = ("httpx", "httpcore", "urllib3")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nerd.worker")
    parser.add_argument("queue", help="the queue to work on (q-…)")
    parser.add_argument(
        "command_template", nargs=argparse.REMAINDER, help="prefix of every argv"
    )
    parser.add_argument("--once", action="store_true", help="exit after one run")
    parser.add_argument("--idle-exit-s", type=float, default=None)
    parser.add_argument("--shutdown-grace-s", type=float, default=30.0)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def is_verbose(args: argparse.Namespace) -> bool:
    """``-v``, or ``NERD_DEBUG`` as for the CLI (workers started by it inherit it)."""
    env = os.environ.get("NERD_DEBUG", "").strip().lower()
    return bool(args.verbose) or env not in ("", "0", "false", "no", "off")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if is_verbose(args) else logging.INFO,
        format=LOG_FORMAT,
        stream=sys.stderr,
    )
    # One line per request would drown the worker's own state changes.
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return _work(args)
    except errors.NerdError as exc:
        print(f"nerd: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code


def _work(args: argparse.Namespace) -> int:
    from nerd.client import Client
    from nerd.ids import check_id
    from nerd.worker.loop import run_worker

    check_id(args.queue, "q")
    with Client.from_environment() as client:
        return run_worker(
            client,
            args.queue,
            command_template=args.command_template,
            once=args.once,
            idle_exit_s=args.idle_exit_s,
            runtime=args.runtime,
            shutdown_grace_s=args.shutdown_grace_s,
        )


if __name__ == "__main__":
    sys.exit(main())
