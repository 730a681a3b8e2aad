"""One exception hierarchy: every error servicelogs raises is a ServiceLogsError.

Messages name what a user needs to find the problem: the object key, the line, the field and the value.
`transient` marks errors worth retrying (throttling, a lost connection); everything else is terminal.
"""

from __future__ import annotations


class ServiceLogsError(Exception):
    """Root of every error raised by servicelogs."""

    transient = False


class UsageError(ServiceLogsError):
    """The caller asked for something that cannot be done (unknown format, bad path, bad option)."""


class UnknownFormatError(UsageError):
    def __init__(self, name: str, known: list[str]) -> None:
        import difflib

        close = difflib.get_close_matches(name.lower(), known, n=1)  # `ALB` too
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown log format {name!r} (known: {', '.join(known)}){hint}")
        self.name = name


class SourceError(ServiceLogsError):
    """A source object could not be listed or read as a whole (corrupt gzip, vanished object)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class StorageError(ServiceLogsError):
    """An operation on a source or target store failed; the message names the operation and the key."""

    def __init__(self, operation: str, key: str, reason: str, *, transient: bool = False) -> None:
        super().__init__(f"{operation} {key}: {reason}")
        self.operation, self.key, self.reason = operation, key, reason
        self.transient = transient

    def __reduce__(self) -> tuple:  # raised in worker processes: it must cross back to the run whole
        return (_storage_error, (self.operation, self.key, self.reason, self.transient))


def _storage_error(operation: str, key: str, reason: str, transient: bool) -> StorageError:
    return StorageError(operation, key, reason, transient=transient)


class FencedError(ServiceLogsError):
    """Another run took this run for dead and said so in the ledger (a fence): this run may commit nothing
    more. It stops; what it had not committed is converted by the next run."""

    def __init__(self, run_id: str, by: str, seq: int) -> None:
        super().__init__(
            f"run {run_id} was fenced by run {by} at ledger position {seq} (taken for dead: paused past its "
            "lease, or another host's clock is ahead); it committed nothing more, the next run converts the rest"
        )
        self.run_id, self.by, self.seq = run_id, by, seq

    def __reduce__(self) -> tuple:
        return (type(self), (self.run_id, self.by, self.seq))


class StagingStopped(ServiceLogsError):
    """The run stopped (Ctrl-C, a fence, an error) while a batch was staging ahead of its commit
    (engines.local.one_ahead): the batch stopped at its next object or block, staged nothing and was never
    handed over. Its intent stays, as after a crash: the next run redoes it."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id}: staging stopped, as its run did; the next run redoes it")
        self.batch_id = batch_id


class ConflictError(ServiceLogsError):
    """Another run committed first (a conditional write lost its race); the caller re-reads and retries."""
