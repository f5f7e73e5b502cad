"""Abort on error: an uncaught exception on any rank ends the whole job, never a hang.

The other ranks of a data-parallel job wait for the failed one in their next collective, and
would wait for ever. ``install_abort_hook`` (called by ``fcgpu.distributed.init`` for more than
one rank) replaces ``sys.excepthook``, as ChainerMN's global_except_hook does: the traceback is
printed with the rank's number, the streams are flushed, then ``MPI_Abort`` ends every rank and
mpiexec exits with a non-zero status. A rank that is killed outright is mpiexec's to handle: it
ends the other ranks itself.
"""
from __future__ import annotations

import sys
import traceback
from types import TracebackType
from typing import Any, Callable

__all__ = ["install_abort_hook"]

Hook = Callable[[type[BaseException], BaseException, "TracebackType | None"], Any]


def install_abort_hook(comm: Any) -> Hook:
    """Make an uncaught exception abort the whole job through ``comm.abort``; returns the hook
    that was replaced."""
    previous = sys.excepthook

    def abort_on_uncaught(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        stream = sys.__stderr__ or sys.stderr
        try:
            lines = traceback.format_exception(kind, error, tb)
            prefix = f"[rank {comm.rank}] "
            report = "".join(prefix + line for part in lines for line in part.splitlines(True))
            # One write: the traceback and the verdict reach the stream together, before the abort.
            stream.write(report + f"[rank {comm.rank}] fcgpu: uncaught {kind.__name__} on rank {comm.rank} of "
                                f"{comm.size}; aborting every rank of the job\n")
            stream.flush()
            if sys.stdout is not None:
                sys.stdout.flush()
        except BaseException:  # printing must never keep the job from ending
            pass
        finally:
            comm.abort(1)

    sys.excepthook = abort_on_uncaught
    return previous
