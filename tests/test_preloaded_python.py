"""The test helper that runs `python script.py` as a fork of a process that has the libraries imported: a run looks
to its script and to the test like a new interpreter's."""

import os
import subprocess
import sys

import pytest
from preloaded_python import run

SCRIPT = """
import os, signal, sys, threading, atexit
import torch
print("parent", os.getppid())
print("argv", sys.argv[1:], "cwd", os.getcwd(), "path0", sys.path[0] == os.path.dirname(os.path.abspath(__file__)))
print("name", __name__, "env", os.environ.get("PRELOADED_TEST"), "stdin", sys.stdin.read())
default_sigint = signal.getsignal(signal.SIGINT) is signal.default_int_handler
print("threads", torch.get_num_threads() == (os.cpu_count() or 1), "sigint", default_sigint)
torch.set_num_threads(1)  # leaves the next run alone
atexit.register(lambda: print("atexit ran"))
threading.Thread(target=lambda: print("thread joined")).start()
print("to stderr", file=sys.stderr)
if sys.argv[1:] == ["fail"]:
    raise ValueError("a script error")
if sys.argv[1:] == ["sleep"]:
    import time; time.sleep(60)
if sys.argv[1:] == ["say"]:
    sys.exit("stopped: say")
sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("preloaded") / "probe.py"
    path.write_text(SCRIPT)
    return path


def test_a_run_sees_its_own_arguments_folder_environment_input_and_exit_code(script, tmp_path, monkeypatch):
    monkeypatch.setenv("PRELOADED_TEST", "yes")
    result = run([sys.executable, str(script), "3", "x y"], capture_output=True, text=True, cwd=tmp_path, input="hi")
    assert result.returncode == 3, result.stderr
    assert f"parent {os.getpid()}" not in result.stdout  # a fork of the server, not a child of this process
    assert f"argv ['3', 'x y'] cwd {tmp_path} path0 True" in result.stdout
    assert "name __main__ env yes stdin hi" in result.stdout
    assert "threads True sigint True" in result.stdout
    assert "atexit ran" in result.stdout and "thread joined" in result.stdout  # the interpreter's own exit
    assert result.stderr == "to stderr\n"
    again = run([sys.executable, str(script)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert again.returncode == 0 and "threads True" in again.stdout and "stdin \n" in again.stdout


def test_an_error_is_a_traceback_and_status_1_and_check_raises(script):
    result = run([sys.executable, str(script), "fail"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and "ValueError: a script error" in result.stderr
    with pytest.raises(subprocess.CalledProcessError):
        run([sys.executable, str(script), "fail"], capture_output=True, check=True, stdin=subprocess.DEVNULL)
    merged = run([sys.executable, str(script), "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert merged.returncode == 2 and "to stderr" in merged.stdout and merged.stderr is None
    message = run([sys.executable, str(script), "say"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert message.returncode == 1 and message.stderr.endswith("to stderr\nstopped: say\n")  # sys.exit("...")


def test_a_run_past_its_timeout_is_killed_and_the_next_one_works(script):
    with pytest.raises(subprocess.TimeoutExpired):
        run([sys.executable, str(script), "sleep"], capture_output=True, timeout=3, stdin=subprocess.DEVNULL)
    assert run([sys.executable, str(script), "4"], capture_output=True, stdin=subprocess.DEVNULL).returncode == 4


def test_uncaptured_output_goes_where_the_caller_s_goes(script, capfd):
    assert run([sys.executable, str(script), "0"], stdin=subprocess.DEVNULL).returncode == 0
    out, err = capfd.readouterr()
    assert "argv ['0']" in out and "to stderr" in err


def test_other_commands_and_import_time_variables_start_a_real_interpreter(script, monkeypatch):
    forked = run([sys.executable, str(script), "0"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    code = "import os; print(os.getppid())"
    assert run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == str(os.getpid())
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    real = run([sys.executable, str(script), "0"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert forked.returncode == real.returncode == 0
    assert "threads True" in forked.stdout and "threads False" in real.stdout  # OMP_NUM_THREADS took effect
