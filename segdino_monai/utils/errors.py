"""Bad input, told as such: one exception class for it, and how the commands turn it into one line and exit 2.

A user's mistake (a missing or unreadable file, a wrong option) must reach them as one clear line that names the file
or option and says what to do, never as a traceback; a real bug keeps its traceback. :class:`InputError` marks the
first kind. The ``segdino`` command and ``python -m monai.bundle run`` (through :func:`install_excepthook`, which
the bundle configs call first in ``initialize``) both report it with :func:`input_error_message`.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType

__all__ = ["InputError", "finish_worker_threads", "input_error_message", "install_excepthook", "interrupted"]

logger = logging.getLogger("segdino_monai")

#: OS errors that are about a path the user gave (their message names the file), not about the program.
_PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


class InputError(ValueError):
    """Bad input from the user: a file, a folder, a datalist or an option; the message names it and says what to do.

    The one base class of the package's bad-input errors (``DatasetError``, ``SegUnsupportedError``, the MONAI Label
    app's ``BadImageError``). It is a ``ValueError``, so code that guards against bad values catches it too.
    """


def _chain(error: BaseException) -> list[BaseException]:
    """The error and its causes, outermost first (``__cause__``, else ``__context__``), without cycles."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def input_error_message(error: BaseException) -> str | None:
    """The one-line message for bad input behind ``error``, or ``None`` when it is not bad input (a bug).

    The outermost :class:`InputError` in the chain wins, so our own message about a file is never replaced by the
    message of the library error it was raised from (torch's advice to unpickle, say). Errors about a path the user
    gave (missing, not permitted, a folder where a file belongs) count as bad input. Any other exception, a plain
    ``ValueError`` included (a shape bug in a transform raises one too), is a bug: ``None``, and its traceback shows.
    """
    chain = _chain(error)
    for item in chain:
        if isinstance(item, InputError):
            return _one_line(item)
        if found := _from_worker(str(item)):
            return found
    for item in chain:
        if isinstance(item, _PATH_ERRORS):
            return _one_line(item)
    return None


def _from_worker(text: str) -> str | None:
    """The message of an :class:`InputError` raised in a DataLoader worker, from the text torch re-raises it with.

    A worker's exception reaches the main process re-created from its type and a message that holds the worker's
    formatted traceback (``... segdino_monai.utils.errors.InputError: <message>``).
    """
    if "DataLoader worker process" not in text:
        return None
    for line in reversed(text.splitlines()):
        name, sep, message = line.removeprefix("Original ").partition(": ")
        if sep and name.startswith("segdino_monai.") and _is_input_error(name):
            return " ".join(message.split())
    return None


def _is_input_error(qualified_name: str) -> bool:
    module_name, _, class_name = qualified_name.rpartition(".")
    module = sys.modules.get(module_name)
    kind = getattr(module, class_name, None)
    return isinstance(kind, type) and issubclass(kind, InputError)


def interrupted(error: BaseException) -> bool:
    """Whether ``error`` is Ctrl-C (or SIGTERM turned into it), itself or behind the error a clean-up raised.

    Ctrl-C lands anywhere, inside ``torch.save`` too, whose zip writer then fails while closing the file and raises
    a ``RuntimeError`` in place of the ``KeyboardInterrupt`` (kept as its context): that is still the user's
    Ctrl-C, not a crash.
    """
    return any(isinstance(item, KeyboardInterrupt) for item in _chain(error))


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def install_excepthook() -> None:
    """Report bad input as one logged line with exit status 2 (Ctrl-C: 130), for ``python -m monai.bundle run``.

    Other exceptions keep the interpreter's traceback. Installing twice is harmless.
    """
    if getattr(sys.excepthook, "_segdino", False):
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if interrupted(error):
            print("Interrupted.", file=sys.stderr)
            finish_worker_threads()
            sys.exit(130)
        message = input_error_message(error)
        if message is None:
            previous(kind, error, tb)
            return
        print(f"ERROR {message}", file=sys.stderr)
        finish_worker_threads()
        sys.exit(2)

    hook._segdino = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def finish_worker_threads(timeout: float = 60.0) -> None:
    """Let the thread-pool workers of a failed run finish their current item before the interpreter exits.

    When one item of MONAI's ``CacheDataset`` fails, its ``ThreadPool`` is terminated but not joined: the other
    workers are still inside torch on their own items. Exiting then kills them mid-call and the process aborts
    (``terminate called without an active exception``, status 134) instead of exiting with our status. Each worker
    stops after its current item, so this waits for them (at most ``timeout`` seconds each).
    """
    for thread in threading.enumerate():
        # multiprocessing.pool's workers run the function ``worker``: Python names such threads "Thread-N (worker)"
        if thread is not threading.current_thread() and thread.daemon and thread.name.endswith("(worker)"):
            thread.join(timeout)
