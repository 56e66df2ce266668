"""Run untrusted symbolic work in a child process with a hard time limit.

sympy can hang on model output (``2^{2^{2^{2^{99}}}}``, ``99999!``), and math-verify's own timeout uses
``signal.alarm``, which only works in the main thread. A persistent child process does the comparisons; a call
that exceeds its deadline kills the child (a fresh one starts on the next call) and counts as a failure. Cost: one
pipe round trip per call (~0.1 ms) plus a one-off child start-up (~1 s to import sympy).
"""

from __future__ import annotations

import multiprocessing as mp
import threading


def _serve(conn, target) -> None:
    while True:
        try:
            args = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", target(*args)))
        except Exception as error:  # noqa: BLE001 - any failure of untrusted input is a result, not a crash
            conn.send(("error", repr(error)))


class TimeLimitedWorker:
    """``worker(*args, timeout=s)`` → ``target(*args)`` computed in a child; raises TimeoutError past ``s``."""

    def __init__(self, target):
        self.target = target
        self._process = None
        self._conn = None
        self._lock = threading.Lock()  # one request in flight per worker

    def _start(self) -> None:
        context = mp.get_context("spawn")  # no fork of a process that may hold torch / CUDA / Ray state
        parent, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, self.target), daemon=True)
        self._process.start()
        self._conn = parent

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(timeout=5)
        self._process = self._conn = None

    def __call__(self, *args, timeout: float):
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._start()
            self._conn.send(args)
            if not self._conn.poll(timeout):
                self._kill()
                raise TimeoutError(f"gave up after {timeout} s")
            status, value = self._conn.recv()
            if status == "error":
                raise ValueError(value)
            return value

    def close(self) -> None:
        with self._lock:
            self._kill()
