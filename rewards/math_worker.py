"""Symbolic answer comparison (math-verify) in a child process, with a hard time limit on every comparison.

Why a child process: sympy can hang on model output (``2^{2^{2^{2^{99}}}}``, ``99999!``, ``\\binom{10^9}{10^5}``), and
math-verify's own timeout is ``signal.alarm`` — whole seconds, main thread only, and unable to interrupt a long
computation inside C. So the comparisons run in one long-lived child (``python -c`` importing this module; no
``multiprocessing``, so nothing of the trainer — torch, CUDA, Ray, ``__main__`` — is forked or re-imported):

* inside the child, ``setitimer`` raises a ``BaseException`` after ``timeout_s`` (math-verify catches ``Exception``
  everywhere, so a plain exception would be swallowed and the next strategy would hang again); the child survives
  and answers "timed out";
* in the parent, if no answer comes within ``timeout_s + kill_grace_s`` (a computation stuck in C), the child is
  killed and a fresh one is started in the background (~0.5 s of imports, overlapped with the caller's work).

Cost per comparison: one pipe round trip (~0.05 ms) plus math-verify itself (~0.2–2 ms for typical answers). One-off:
the child's start-up (~0.6 s). The child also caps its address space (4 GiB) so a hostile input cannot take the
machine's memory within its time limit. POSIX only (``select`` on pipes, ``setitimer``).

Model output is never evaluated as Python: both answers are parsed as LaTeX only (``LatexExtractionConfig``:
latex2sympy's ANTLR parser builds sympy objects directly). math-verify's plain-expression mode
(``ExprExtractionConfig``) is not used because it calls sympy's ``parse_expr``, which runs ``eval``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)  # the directory that contains `rewards/`
_MEMORY_LIMIT_BYTES = 4 << 30
_REPLIES = {b"1": True, b"0": False, b"e": False, b"t": None}  # "t": the child's own deadline fired


def equivalent(reference: str, prediction: str) -> bool:
    """math-verify's verdict: is ``prediction`` mathematically equal to ``reference``? (no time limit: see module doc)

    Both are extracted answers (``\\frac{1}{2}``, ``0.5``, ``50\\%``, ``\\{1,2\\}``), wrapped in ``\\boxed{}`` so that
    math-verify's LaTeX extraction takes them whole.
    """
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig()]
    gold = parse(f"\\boxed{{{reference}}}", config, parsing_timeout=None)
    pred = parse(f"\\boxed{{{prediction}}}", config, parsing_timeout=None)
    return bool(gold) and bool(pred) and bool(verify(gold, pred, timeout_seconds=None))


# ---------------------------------------------------------------------------------------------------------- child


class _Deadline(BaseException):
    """Raised by SIGALRM; a BaseException so that math-verify's ``except Exception`` handlers cannot swallow it."""


def _on_deadline(signum, frame):
    raise _Deadline


def _limit_memory() -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = _MEMORY_LIMIT_BYTES if hard == resource.RLIM_INFINITY else min(_MEMORY_LIMIT_BYTES, hard)
        if soft == resource.RLIM_INFINITY or soft > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):  # not POSIX, or not allowed: the time limit still holds
        pass


def _check(reference: str, prediction: str, timeout_s: float) -> bytes:
    import signal

    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            ok = equivalent(reference, prediction)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return b"1" if ok else b"0"
    except _Deadline:
        return b"t"
    except Exception:  # noqa: BLE001 - a failure on untrusted input is a verdict ("not equal"), not a crash
        return b"e"


def serve() -> None:
    """The child's loop: a JSON request ``[reference, prediction, timeout_s]`` per stdin line → a reply line."""
    import signal

    replies = sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the protocol
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # its "timeout disabled" warnings: the limit is ours
    _limit_memory()
    signal.signal(signal.SIGALRM, _on_deadline)
    _check("1", "1", 60.0)  # warm up: imports and math-verify's regex compilation happen before "ready"
    replies.write(b"ready\n")
    replies.flush()
    for line in sys.stdin.buffer:
        reference, prediction, timeout_s = json.loads(line)
        replies.write(_check(reference, prediction, float(timeout_s)) + b"\n")
        replies.flush()


# --------------------------------------------------------------------------------------------------------- parent


class MathWorker:
    """The parent's handle on one child: ``worker.equivalent(reference, prediction, timeout_s)`` → True/False, or
    None when the time limit was hit (or the child died). Thread-safe (one comparison at a time)."""

    def __init__(self, kill_grace_s: float = 0.3, startup_timeout_s: float = 120.0):
        self.kill_grace_s = kill_grace_s
        self.startup_timeout_s = startup_timeout_s
        self.owner_pid = os.getpid()
        self.timeouts = 0  # comparisons that hit the limit (inner deadline or kill)
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._ready = False
        self._buffer = b""
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _spawn(self) -> None:
        code = f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); from rewards.math_worker import serve; serve()"
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        self._ready, self._buffer = False, b""

    def _read_line(self, deadline: float) -> bytes | None:
        """The next reply line, or None if ``deadline`` (monotonic) passes first. EOFError if the child died."""
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError("the math worker exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _ensure_ready(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            self._spawn()
        if not self._ready:
            try:
                line = self._read_line(time.monotonic() + self.startup_timeout_s)
            except EOFError:
                line = None
            if line != b"ready":
                self._kill()
                raise RuntimeError(
                    f"the math-verify worker did not start within {self.startup_timeout_s} s "
                    f"(is math-verify installed for {sys.executable}?)"
                )
            self._ready = True

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
        self._proc, self._ready, self._buffer = None, False, b""

    def _restart(self) -> None:
        self._kill()
        self.restarts += 1
        self._spawn()  # imports while the caller goes on; the next comparison waits for "ready"

    def equivalent(self, reference: str, prediction: str, timeout_s: float) -> bool | None:
        """math-verify's verdict within ``timeout_s`` seconds, else None."""
        request = json.dumps([reference, prediction, timeout_s]).encode() + b"\n"
        with self._lock:
            self._ensure_ready()
            try:
                self._proc.stdin.write(request)
                self._proc.stdin.flush()
                reply = self._read_line(time.monotonic() + timeout_s + self.kill_grace_s)
            except (EOFError, BrokenPipeError, OSError):
                reply = None
            if reply is None:  # stuck past the grace period (or crashed): kill it
                self._restart()
            result = _REPLIES.get(reply) if reply is not None else None
            if result is None:
                self.timeouts += 1
                logger.debug("math comparison gave up after %.2f s: %.80r", timeout_s, prediction)
            return result

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self.owner_pid == os.getpid():
                self._kill()


_shared: MathWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> MathWorker:
    """The process-wide worker, started on first use (a forked child of the trainer gets its own)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.owner_pid != os.getpid():
            _shared = MathWorker()
            atexit.register(_shared.close)
        return _shared
