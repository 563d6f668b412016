"""What should happen to a message that failed, named by its exception type.

StageError
├── PermanentError   can never succeed: park it on the dead-letter topic with its reason
├── RetryableError   may succeed soon: retry in place a bounded number of times, with
│                    backoff, then dead-letter it as ``retries_exhausted``
└── TransientError   the stage's dependency is down (broker, cluster): do not commit,
                     rewind to the uncommitted offsets and re-read the batch later
"""

from __future__ import annotations


class StageError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class PermanentError(StageError):
    """The message itself is bad; retrying cannot help."""


class RetryableError(StageError):
    """A passing failure for this message; a later attempt may succeed."""


class TransientError(StageError):
    """The whole stage cannot make progress now; requeue everything uncommitted."""
