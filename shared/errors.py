"""The error contract: a user's mistake ends with one `error: ...` line on stderr and exit code 2."""

from __future__ import annotations

import errno
import functools
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

EXIT_USER_ERROR, EXIT_INTERRUPTED = 2, 130

F = TypeVar("F", bound=Callable[..., int | None])


class UserError(Exception):
    """A mistake the user can fix: bad flag, missing data, wrong weights file. The message names the fix."""


def first_line(e: BaseException) -> str:
    """An exception's first line of text, for an `error:` line (its type when it has no text)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_cli(main: F) -> F:
    """Wrap a command's `main` so that a UserError becomes one `error:` line and exit code 2, and a Ctrl-C or
    SIGTERM that reaches it (during start-up, or a second one) one `interrupted` line and exit code 130, after
    the `with` blocks under way have cleaned up (a run folder that never started is removed)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        except OSError as e:
            if e.errno != errno.ENAMETOOLONG:
                raise
            name = str(e.filename or "a path")
            print(f"error: {name[:60]}{'...' if len(name) > 60 else ''} is too long a path ({len(name)} characters); "
                  f"use a shorter one", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]
