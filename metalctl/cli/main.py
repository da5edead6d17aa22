"""Entry point: ``metalctl VERB ...``; maps library errors to exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import yaml

from metalctl import __version__, settings
from metalctl.cli import audit as audit_cli
from metalctl.cli import discover as discover_cli
from metalctl.cli import enroll as enroll_cli
from metalctl.cli import handoff as handoff_cli
from metalctl.cli import harden as harden_cli
from metalctl.cli import logs, optcheck, options
from metalctl.cli import nodes as nodes_cli
from metalctl.cli import pki as pki_cli
from metalctl.cli import profile as profile_cli
from metalctl.cli import provision as provision_cli
from metalctl.cli import run as run_cli
from metalctl.cli import serve as serve_cli
from metalctl.errors import InputError, MetalctlError, PeerUnavailable, mask_url, one_line
from metalctl.exitcodes import EPILOG, ExitCode

#: verbs other distributions add (the lab's ``metalctl lab``: lab/pyproject.toml)
VERB_PLUGINS = "metalctl.verbs"

LOG = logging.getLogger("metalctl")


def parser() -> argparse.ArgumentParser:
    p = options.Parser(prog="metalctl", epilog=f"{textwrap.fill(EPILOG, 79)}\n\n"
                                               f"{settings.epilog()}",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Rack of servers to hardened, profiled KVM compute "
                                            "nodes for OpenStack Nova.")
    p.add_argument("--version", action="version", version=f"metalctl {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="-v info, -vv debug (peer libraries included)")
    p.add_argument("--debug", action="store_const", const=2, dest="verbose")
    p.add_argument("--log-file", type=Path, help="also write logs here")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for module in (discover_cli, enroll_cli, profile_cli, provision_cli, pki_cli, harden_cli,
                   audit_cli, nodes_cli, serve_cli, run_cli, handoff_cli):
        module.register(sub)
    for verb in entry_points(group=VERB_PLUGINS):  # `metalctl lab`, when the lab is installed
        verb.load()(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one verb; every error ends as one line on stderr and an exit code.

    Usage errors and wrong option values exit 3 before anything is probed. A
    traceback is shown only for an unexpected error under ``--debug``.
    """
    args = parser().parse_args(argv)
    try:
        logs.setup_logging(args.verbose, args.log_file)
    except InputError as exc:
        logs.setup_logging(args.verbose, None)
        LOG.error("%s", _one_line(exc))
        return ExitCode.INVALID_INPUT
    try:
        optcheck.check_options(args)
        return int(args.func(args))
    except InputError as exc:
        LOG.error("%s", _one_line(exc))
        return ExitCode.INVALID_INPUT
    except PeerUnavailable as exc:  # Ironic, Nova/Placement, the store, the lab: one place
        LOG.error("%s", _one_line(exc))
        return ExitCode.PEER_UNAVAILABLE
    except MetalctlError as exc:
        LOG.error("%s", _one_line(exc))
        return ExitCode.FAILED
    except KeyboardInterrupt:
        LOG.error("interrupted; re-run to converge (every stage is idempotent)")
        # Exit now: worker threads may be blocked on a peer for their whole timeout,
        # and the interpreter would join them on a normal exit. The store is safe:
        # every write is a transaction, and one cut short is rolled back.
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        logging.shutdown()
        os._exit(ExitCode.INTERRUPTED)
    except (UnicodeError, yaml.YAMLError) as exc:
        # a data file read outside metalctl.data (which raises InputError itself)
        LOG.error("invalid input: %s", _one_line(exc))
        return ExitCode.INVALID_INPUT
    except OSError as exc:
        if exc.filename is not None:  # a path the user gave: missing, a directory, denied
            LOG.error("%s: %s", one_line(exc.filename), exc.strerror or _one_line(exc))
            return ExitCode.INVALID_INPUT
        LOG.error("%s", _one_line(exc))
        return ExitCode.FAILED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a trace
        LOG.error("internal error: %s: %s%s", type(exc).__name__, _one_line(exc),
                  "" if args.verbose >= 2 else " (run with --debug for the traceback)",
                  exc_info=args.verbose >= 2)
        return ExitCode.FAILED


def _one_line(exc: BaseException) -> str:
    """The error as one line: control characters escaped, URL userinfo masked; a
    foreign error (not metalctl's own wording) cut to 300 characters."""
    text = mask_url(one_line(str(exc).strip()))
    if isinstance(exc, MetalctlError):
        return text
    return text[:300] or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
