"""The `opstui` command line.

Every failure a user can cause (a busy port, a locked data dir, a bad flag)
ends in one line on stderr naming the problem and what to do, and exit code
1 (2 for usage errors, as argparse does). Never a traceback.

Each command group lives in its own module and registers its subcommands in
`parser.py`; a subcommand names its handler with `set_defaults(handler=...)`,
a plain function `(args, parser) -> int`.
"""

from __future__ import annotations

import logging
import sys

from opstui.cli.parser import build_parser
from opstui.cli.tui import _plainly_embedded, run_tui
from opstui.errors import EXIT_FAILURE, CliError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        handler = getattr(args, "handler", None)
        if handler is None:
            return run_tui(args, parser)
        return handler(args, parser)
    except CliError as exc:
        print(f"opstui: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `opstui deploy list | head -1`: the reader left. Quietly, as Unix tools do;
        # point stdout at /dev/null so the interpreter's final flush cannot fail again.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        from opstui.config import ConfigError
        from opstui.session import SignInError
        from opstui.store import StoreError

        if isinstance(exc, ConfigError | SignInError | StoreError):
            print(f"opstui: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        raise


__all__ = ["EXIT_FAILURE", "CliError", "_plainly_embedded", "build_parser", "main"]
