"""``autopilot``: one entry point; each command group lives in its own module and registers itself.

A module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, adding parsers whose ``func`` takes the
parsed args and returns an exit code, and whose ``settings`` default says where the command's settings come
from (autopilot/settings.py: the deployment's by default, the local twin's, or none). Errors the user can act
on are printed as one line each, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autopilot.settings import DEPLOYMENT, install_deployment
from shared import runtime
from shared.config.wording import did_you_mean

DISTRIBUTION = "finetune-autopilot"  # pyproject.toml's project name
PROJECT_ROOT = Path(__file__).resolve().parents[1]

COMMAND_MODULES = (
    "autopilot.runs",  # validate, submit, status
    "autopilot.stack",  # up, down
    "autopilot.endpoints",  # invoke, endpoints, cleanup
    "autopilot.dataset",  # prepare-dataset
    "autopilot.plan",  # plan
    "autopilot.demo",  # demo
    "autopilot.lifecycle",  # approve, reject, cancel, rollback
)


class Parser(argparse.ArgumentParser):
    """argparse, with the closest choice offered when a command or a choice is mistyped (usage errors exit 2)."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            guess = did_you_mean(str(value), [str(c) for c in action.choices or ()])
            if guess is None:
                raise
            raise argparse.ArgumentError(action, f"{exc.message}; did you mean {guess!r}?") from None


def version() -> str:
    """The project's version: the installed distribution's, else the checkout's pyproject.toml."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        import tomllib

        with (PROJECT_ROOT / "pyproject.toml").open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="autopilot",
        description="Fine-tune Autopilot: fine-tune, register, deploy and clean up chat models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request URL at INFO; a webhook URL may carry a `code=` key. Keep it out of logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.verbose:
        # azure.identity logs each credential of the chain that could not sign in (WARNING), before the
        # command prints the one line that says so and what to do; -v shows them.
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # Every command on the deployment reads its settings here (autopilot/settings.py) and runs on a runtime
    # built from them, unless the caller made one the process's already (tests pass fakes that way); the
    # process is left as it was found.
    built = getattr(args, "settings", DEPLOYMENT) == DEPLOYMENT and runtime.installed() is None
    if built:
        try:
            install_deployment()
        except ValueError as exc:
            print(f"autopilot {args.command}: {exc}", file=sys.stderr)
            return 2
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `autopilot ... | head` closed the pipe: not an error worth a traceback.
        sys.stderr.close()
        return 0
    finally:
        if built:
            runtime.reset()
    return code


if __name__ == "__main__":
    sys.exit(main())
