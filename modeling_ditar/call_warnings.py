"""What a pipeline call warned of, for callers that show it elsewhere than the console (a web page, an HTTP header).

`logged_warnings(pipe)` collects the messages the pipeline's package logs at WARNING or above in the calling thread
while the block runs; the console prints them as before."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator


def package_logger(pipe) -> logging.Logger:
    """The logger above all of the pipeline's package's, e.g. "modeling_ditar" above "modeling_ditar.pipeline_ditar"
    (transformers' and diffusers' `get_logger` name them after their modules)."""
    return logging.getLogger(type(pipe).__module__.partition(".")[0])


class CallWarnings(logging.Handler):
    """Collects, each once and in order, the messages (through `rename`) of the records at WARNING or above that the
    loggers below the one it is attached to log in one thread (the one that made it)."""

    def __init__(self, rename: Callable[[str], str] | None = None):
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.rename = rename
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            message = record.getMessage()
            if self.rename is not None:
                message = self.rename(message)
            if message not in self.messages:
                self.messages.append(message)
        # Python prints a record that reaches no handler with its last-resort handler (how the console shows the
        # pipeline's warnings when nothing configured logging); attaching this handler must not silence that
        if self._first_of_only_collectors(logging.getLogger(record.name)):
            last_resort = logging.lastResort
            if last_resort is not None and record.levelno >= last_resort.level:
                last_resort.handle(record)

    def _first_of_only_collectors(self, logger: logging.Logger | None) -> bool:
        """Whether no other handler takes records of `logger` and this is the first collector that does (several
        calls at once each attach one: one of them prints)."""
        first = None
        while logger is not None:
            for handler in logger.handlers:
                if not isinstance(handler, CallWarnings):
                    return False
                first = handler if first is None else first
            if not logger.propagate:
                break
            logger = logger.parent
        return first is self


@contextlib.contextmanager
def logged_warnings(pipe, rename: Callable[[str], str] | None = None) -> Iterator[list[str]]:
    """`with logged_warnings(pipe) as messages:` collects into the list `messages` what the pipeline's package logs at
    WARNING or above in this thread during the block (each message once, through `rename` if given)."""
    logger = package_logger(pipe)
    handler = CallWarnings(rename)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
