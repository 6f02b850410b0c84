"""`python script.py ...` for the end-to-end tests, without paying the library imports at every start.

Each run of a training or conversion script spends about 8 s of a 2-core machine importing torch, transformers,
diffusers, accelerate and datasets before its first line, and 2.5 s tearing them down after its last; the end-to-end
tests start some 30 such runs, more than half of the default test run. Here one server process imports those
libraries once and every run is a fork of it: a new process with its own pid, arguments, working directory,
environment, standard streams, signal handlers and exit status, that runs the script as `__main__` and exits as the
interpreter does (the status and traceback, thread joins, atexit handlers, flushed streams) short of the module
teardown. What it shares with its siblings is only what importing the libraries did, so a run whose environment
differs from the server's in a variable the libraries read at import (HF_*, TORCH*, OMP_*, ...) starts a real
interpreter instead, as does any command that is not `python script.py`.

`run` takes the arguments of `subprocess.run` that the tests use and returns a `subprocess.CompletedProcess`.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import select
import socket
import subprocess
import sys
import tempfile
import threading
import warnings

PRELOAD = ("modeling_ditar", "accelerate", "datasets", "peft", "diffusers.training_utils")
# Variables read when those libraries are imported: a run that sets them differently cannot share the server's imports.
# (Not KMP_*: they steer Intel's OpenMP, and torch here links GNU OpenMP; scikit-learn and joblib set KMP_INIT_AT_FORK
# in the test process when some test imports them.)
IMPORT_TIME_PREFIXES = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "DIFFUSERS", "ACCELERATE", "DATASETS", "TORCH", "PYTORCH")
IMPORT_TIME_PREFIXES += ("CUDA", "OMP_", "MKL_", "OPENBLAS", "GOMP_", "TOKENIZERS", "PYTHON", "LD_", "XDG_", "TMP")

_subprocess_run = subprocess.run  # the real one, for every command this module does not take


# ---------------------------------------------------------------------------------------------------- the server side
def serve(socket_path: str) -> None:
    """Import the libraries, then fork one child per request until the test process closes our stdin."""
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional library (peft) that is not installed: its scripts import it themselves
            pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen()
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in readable:  # the test process is gone or done: nothing to clean up, no teardown to wait for
            os._exit(0)
        connection, _ = listener.accept()
        message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
        while chunk := connection.recv(1 << 16):
            message += chunk
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            listener.close()
            connection.close()
            _become_the_script(request, fds)  # never returns: the child ends in os._exit
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):  # a caller that timed out has killed the child and hung up
            connection.sendall(f"{pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            connection.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
        connection.close()


def _become_the_script(request: dict, fds: list[int]) -> None:
    for target, fd in enumerate(fds):  # the caller's stdin, stdout and stderr
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    script = request["argv"][0]
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python script.py` puts the script's folder first
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as stop:  # as the interpreter reads sys.exit()'s argument
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    _exit(code)


def _exit(code: int) -> None:
    """The interpreter's exit up to its module teardown: that teardown (garbage-collecting torch, transformers and the
    rest) takes 2.5 s here and does nothing a script can see, so the child leaves with os._exit after it."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code & 0xFF)


# ---------------------------------------------------------------------------------------------------- the test side
class _Server:
    def __init__(self):
        self.folder = tempfile.TemporaryDirectory(prefix="preloaded-python-")
        self.path = os.path.join(self.folder.name, "socket")
        self.env = dict(os.environ)
        self.process = subprocess.Popen(
            [sys.executable, __file__, self.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready, _, _ = select.select([self.process.stdout], [], [], 300)
        if not ready or self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise RuntimeError("the preloaded Python server did not start")

    def alive(self) -> bool:
        return self.process.poll() is None

    def shares_imports_with(self, env: dict) -> bool:
        def import_time(variables):
            return {k: v for k, v in variables.items() if k.startswith(IMPORT_TIME_PREFIXES)}

        return import_time(env) == import_time(self.env)

    def run(self, argv: list[str], cwd: str, env: dict, fds: list[int], timeout: float | None) -> int:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self.path)
        with connection, connection.makefile("r") as replies:
            message = json.dumps({"argv": argv, "cwd": cwd, "env": env}).encode()
            socket.send_fds(connection, [message], fds)
            connection.shutdown(socket.SHUT_WR)
            pid = int(replies.readline())
            connection.settimeout(timeout)
            try:
                return int(replies.readline())
            except TimeoutError:
                os.kill(pid, 9)
                raise


_server: _Server | None = None
_server_failed = False


def _the_server() -> _Server | None:
    """The running server, started on first use; None (and a warning, once) where it cannot start: every run then
    starts a real interpreter, slower but the same test (test_preloaded_python.py fails on it)."""
    global _server, _server_failed
    if _server_failed:
        return None
    if _server is None or not _server.alive():
        try:
            _server = _Server()
        except (OSError, RuntimeError) as error:
            _server_failed = True
            warnings.warn(f"scripts start real interpreters: {error}", stacklevel=3)
            return None
    return _server


@atexit.register
def _stop_the_server() -> None:
    if _server is not None and _server.alive():
        _server.process.stdin.close()
        _server.process.wait(timeout=30)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _is_a_script_run(args, options: dict) -> bool:
    taken = {"capture_output", "text", "timeout", "cwd", "check", "env", "stdin", "input", "stdout", "stderr"}
    return (
        isinstance(args, (list, tuple))
        and len(args) >= 2
        and str(args[0]) == sys.executable
        and str(args[1]).endswith(".py")
        and set(options) <= taken
        and options.get("stdin") in (None, subprocess.DEVNULL)
        and options.get("stdout") in (None, subprocess.PIPE, subprocess.DEVNULL)
        and options.get("stderr") in (None, subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL)
        and not (options.get("capture_output") and (options.get("stdout") or options.get("stderr")))
    )


def run(args, **options) -> subprocess.CompletedProcess:
    """`subprocess.run(args, **options)`, with `[sys.executable, "script.py", ...]` run as a fork of the server."""
    env = dict(options.get("env") if options.get("env") is not None else os.environ)
    if not _is_a_script_run(args, options):
        return _subprocess_run(args, **options)
    server = _the_server()
    if server is None or not server.shares_imports_with(env):
        return _subprocess_run(args, **options)

    argv = [str(a) for a in args[1:]]
    cwd = str(options.get("cwd") or os.getcwd())
    capture = options.get("capture_output", False)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as given:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            if options.get("input") is not None:
                data = options["input"]
                given.write(data.encode() if isinstance(data, str) else data)
                given.seek(0)
                stdin = given.fileno()
            else:
                stdin = devnull if options.get("stdin") == subprocess.DEVNULL or not _is_open(0) else 0

            def stream(choice, file, own_fd):
                if capture or choice == subprocess.PIPE:
                    return file.fileno()
                return devnull if choice == subprocess.DEVNULL else own_fd

            stdout = stream(options.get("stdout"), out, 1)
            stderr = stdout if options.get("stderr") == subprocess.STDOUT else stream(options.get("stderr"), err, 2)
            sys.stdout.flush()
            sys.stderr.flush()
            timeout = options.get("timeout")
            try:
                returncode = server.run(argv, cwd, env, [stdin, stdout, stderr], timeout)
            except TimeoutError:
                raise subprocess.TimeoutExpired(args, timeout) from None
        finally:
            os.close(devnull)

        def captured(file, wanted):
            if not wanted:
                return None
            file.seek(0)
            data = file.read()
            return data.decode() if options.get("text") else data

        wants_out = capture or options.get("stdout") == subprocess.PIPE
        wants_err = capture or options.get("stderr") == subprocess.PIPE
        result = subprocess.CompletedProcess(args, returncode, captured(out, wants_out), captured(err, wants_err))
    if options.get("check"):
        result.check_returncode()
    return result


if __name__ == "__main__":
    serve(sys.argv[1])
