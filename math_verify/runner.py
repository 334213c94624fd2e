"""The safe runner: a persistent pool of worker processes with a hard deadline.

Anything that touches sympy runs in a worker process, never in the caller.
The parent enforces the deadline from outside: each pair gets ``timeout``
seconds from the moment it is handed to a worker; a worker that has not
answered by then is killed (SIGKILL) and replaced, and its pair scores False.
That holds against any sympy routine, in any thread, and against memory
blow-ups (each worker also runs under an address-space limit).

Workers are started with the "forkserver" method (or "spawn" where there is
no forkserver), never plain fork: the trainer has torch, CUDA and threads.
The forkserver preloads sympy and this package, so replacing a killed worker
costs milliseconds, not a fresh sympy import. A daemonic process (a
multiprocessing.Pool or DataLoader worker) may not start multiprocessing
children, so there the workers are plain subprocesses of the same interpreter
speaking the same protocol over pipes; the deadline holds the same way. The
pool is created lazily on first use, reused across calls, and shut down at
interpreter exit.

If no worker can start at all, the pool says so: ``warm_up()`` raises
``RuntimeError`` and the first affected call warns (``RuntimeWarning``) before
its pairs score False, instead of a silent collapse of the reward.
"""
from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import sys
import threading
import pickle
import struct
import subprocess
import time
import warnings
from collections import deque
from multiprocessing.connection import wait

START_METHOD = "auto"
"""How workers start: "auto" (forkserver, or subprocesses inside a daemonic process),
"forkserver" or "subprocess"."""
STARTUP_TIMEOUT = 120.0
"""Seconds a new worker may take to import sympy before it is given up on."""
WORKER_MEMORY_BYTES = 3 << 30
"""Address-space limit of a worker; a pair that needs more scores False."""


def default_workers() -> int:
    """Worker processes per calling process.

    The CPUs this process may use, divided by the processes torchrun runs on
    this node (``LOCAL_WORLD_SIZE``), capped at 8: every rank verifies its own
    64-512 pairs per step at the same time as the others.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(8, cpus // local))


def _worker_main(conn) -> None:
    """Worker loop: receive (task_id, kind, a, b), answer (task_id, bool)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    from .compare import answers_equal

    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        task_id, kind, a, b = msg
        if kind == "judge":
            result = answers_equal(a, b)
        elif kind == "_sleep":  # test hook: a comparison that hangs for `a` seconds
            time.sleep(a)
            result = True
        else:
            result = False
        try:
            conn.send((task_id, bool(result)))
        except (OSError, ValueError):
            return


@contextlib.contextmanager
def _without_main_module():
    """Start children without re-importing the caller's ``__main__``.

    forkserver and spawn children normally import the parent's main script
    (for the trainer: torch, transformers) before running their target. The
    worker needs none of it, so the main module's ``__spec__``/``__file__``
    are hidden while the child is launched; this also spares callers the
    ``if __name__ == "__main__"`` guard that multiprocessing otherwise needs.
    """
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if main is not None and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__["__spec__"] = None
            main.__dict__.pop("__file__", None)
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


class _PipeConn:
    """A multiprocessing-Connection look-alike over a pair of byte pipes: length-prefixed pickles
    (both ends are this package; the pickles carry only tuples of str, int and bool)."""

    def __init__(self, reader, writer):
        self._r, self._w = reader, writer

    def fileno(self):
        return self._r.fileno()

    def send(self, obj):
        data = pickle.dumps(obj)
        self._w.write(struct.pack("<I", len(data)) + data)
        self._w.flush()

    def recv(self):
        head = self._r.read(4)
        if len(head) < 4:
            raise EOFError
        (n,) = struct.unpack("<I", head)
        data = self._r.read(n)
        if len(data) < n:
            raise EOFError
        return pickle.loads(data)

    def close(self):
        for f in (self._r, self._w):
            with contextlib.suppress(OSError, ValueError):
                f.close()


class _Subprocess:
    """The Process methods the pool uses, for a worker started with subprocess."""

    def __init__(self, popen):
        self.popen = popen

    def is_alive(self):
        return self.popen.poll() is None

    def kill(self):
        with contextlib.suppress(OSError):
            self.popen.kill()

    def join(self, timeout=None):
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)


_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SUBPROCESS_CODE = (f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); "
                    "from math_verify.runner import _stdio_worker; _stdio_worker()")


def _stdio_worker():
    """Entry point of a subprocess worker: the protocol on stdin/stdout, anything printed to stderr."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _worker_main(_PipeConn(sys.stdin.buffer, out))


def _use_subprocess():
    if START_METHOD != "auto":
        return START_METHOD == "subprocess"
    return mp.current_process().daemon  # "daemonic processes are not allowed to have children"


class _Worker:
    def __init__(self, ctx):
        if ctx is None:
            popen = subprocess.Popen([sys.executable, "-c", _SUBPROCESS_CODE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, close_fds=True)
            self.conn, self.proc = _PipeConn(popen.stdout, popen.stdin), _Subprocess(popen)
        else:
            self.conn, child = ctx.Pipe()
            self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
            with _without_main_module():
                self.proc.start()
            child.close()
        self.ready = False
        self.started = time.monotonic()
        self.task: int | None = None
        self.deadline = 0.0

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(5)
        except (OSError, ValueError, AssertionError):
            pass
        try:
            self.conn.close()
        except OSError:
            pass


def _context():
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        try:
            ctx.set_forkserver_preload(["math_verify.compare"])
        except (ValueError, TypeError):
            pass
        return ctx
    return mp.get_context("spawn")


class Pool:
    """Persistent worker pool; ``run`` answers a list of tasks, each within ``timeout``."""

    def __init__(self):
        self._ctx = None
        self._started = False
        self._workers: list[_Worker] = []
        self.failure: str | None = None  # why no worker could start, once that has happened
        self._warned = False
        self._lock = threading.Lock()
        self.killed = 0  # workers killed for missing their deadline (for tests and logs)
        self._pid = os.getpid()

    def _resize(self, n: int) -> None:
        if not self._started:
            self._ctx, self._started = (None if _use_subprocess() else _context()), True
        for w in [w for w in self._workers if not w.proc.is_alive()]:
            self._replace(w)
        while len(self._workers) < n:
            self._workers.append(_Worker(self._ctx))
        while len(self._workers) > n:
            w = self._workers.pop()
            try:
                w.conn.send(None)
            except OSError:
                pass
            w.kill()

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self._workers[self._workers.index(w)] = _Worker(self._ctx)

    def size(self) -> int:
        return len(self._workers)

    def run(self, tasks: list[tuple[str, object, object]], timeout: float, workers: int) -> list[bool]:
        """Answer each (kind, a, b) task; False for any task that misses its deadline."""
        with self._lock:
            return self._run(tasks, float(timeout), max(1, int(workers)))

    def _run(self, tasks, timeout, workers):
        results = [False] * len(tasks)
        if not tasks:
            return results
        try:
            self._resize(workers)
        except Exception as e:  # e.g. no process can be started here at all
            self._fail(f"the worker pool cannot start: {type(e).__name__}: {e}")
            return results
        self.failure = None  # judged afresh on every call
        todo = deque(range(len(tasks)))
        busy, startup_deaths = 0, 0
        while todo or busy:
            now = time.monotonic()
            for w in self._workers:
                if w.ready and w.task is None and todo:
                    idx = todo.popleft()
                    try:
                        w.conn.send((idx, *tasks[idx]))
                    except (OSError, ValueError):
                        self._replace(w)
                        continue  # results[idx] stays False
                    w.task, w.deadline = idx, now + timeout
                    busy += 1
            waits = [w.deadline - now for w in self._workers if w.task is not None]
            waits += [w.started + STARTUP_TIMEOUT - now for w in self._workers if not w.ready]
            if not waits:
                break
            ready = wait([w.conn for w in self._workers], timeout=max(0.0, min(waits)))
            now = time.monotonic()
            for w in list(self._workers):
                if w.conn in ready:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):  # the worker died: its pair scores False
                        if w.task is not None:
                            busy -= 1
                        elif not w.ready:
                            startup_deaths += 1
                        if startup_deaths >= 3 * len(self._workers) and not any(x.ready for x in self._workers):
                            self._fail(f"every worker died before it was ready ({startup_deaths} tries)")
                            todo.clear()
                            break
                        self._replace(w)
                        continue
                    if msg[0] == "ready":
                        w.ready = True
                    elif msg[0] == w.task:
                        results[w.task] = bool(msg[1])
                        w.task = None
                        busy -= 1
                elif w.task is not None and now >= w.deadline:
                    self.killed += 1
                    busy -= 1
                    self._replace(w)
                elif not w.ready and now >= w.started + STARTUP_TIMEOUT:
                    self._replace(w)
                    if all(not x.ready for x in self._workers) and todo:
                        self._fail(f"no worker became ready within {STARTUP_TIMEOUT:.0f} s")
                        todo.clear()  # no worker can start: everything left scores False
            if self.failure and not busy:
                break
        return results

    def _fail(self, reason: str) -> None:
        """Remember that the pool cannot work, and say so once: a reward that silently
        scores everything False would look like a model that never answers right."""
        self.failure = reason
        if not self._warned:
            self._warned = True
            warnings.warn(f"math_verify: {reason}; pairs that need sympy score False", RuntimeWarning,
                          stacklevel=4)

    def close(self) -> None:
        if self._pid != os.getpid():
            return  # inherited through fork: these workers belong to the parent
        for w in self._workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 1.0
        for w in self._workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            w.kill()
        self._workers = []


_POOL: Pool | None = None
_POOL_PID = 0
_POOL_LOCK = threading.Lock()


def get_pool() -> Pool:
    """This process's pool (a forked child gets its own, never its parent's workers)."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL, _POOL_PID = Pool(), os.getpid()
            atexit.register(_POOL.close)
        return _POOL


def warm_up(workers: int | None = None) -> None:
    """Start the pool now (about 1-2 s) instead of on the first pair that needs sympy.

    Raises RuntimeError if the workers cannot run here, with the reason."""
    pool = get_pool()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # raised below instead
        ok = pool.run([("judge", "\\sqrt{4}", "2")], STARTUP_TIMEOUT, workers or default_workers())
    if not ok[0]:
        raise RuntimeError(f"math_verify: the worker pool cannot judge pairs here: {pool.failure or 'no answer'}")
