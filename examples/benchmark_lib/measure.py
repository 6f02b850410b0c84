"""Timing, memory and FLOP helpers for `examples/benchmark.py`.

Timing on a shared machine: before each timed run we wait (up to `max_wait` s) until the machine's CPU use outside
this process is low, then record wall time and this process's CPU time. A run is *clean* when CPU/wall >= 0.85 x
threads (nothing took our cores away); the reported time is the fastest clean run (or the fastest run, flagged, if none
was clean).

Peak memory: the Linux peak resident set size (VmHWM) is reset through /proc/self/clear_refs and glibc's free memory is
returned with malloc_trim before each run; the reported value is VmHWM after the run minus VmRSS before it, i.e. the
extra resident memory the run needed at its peak (model weights, already resident, are not counted). Where that is not
available it falls back to sampling VmRSS every 5 ms in a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import threading
import time
from dataclasses import dataclass, field

import torch


def _proc_status() -> dict[str, int]:
    values = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS", "VmHWM")):
                    key, value = line.split(":")
                    values[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return values


def _reset_peak() -> bool:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Context manager: `.peak_bytes` = peak extra resident memory during the block (see module docstring)."""

    def __enter__(self):
        self.exact = _reset_peak()
        self.before = _proc_status().get("VmRSS", 0)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = None
        if not self.exact:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _proc_status().get("VmRSS", 0))

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self.peak = _proc_status().get("VmHWM", self.peak)
        self.peak_bytes = max(0, self.peak - self.before)
        return False


def _busy_other_cpus(interval: float = 0.25) -> float:
    """Cores in use by other processes over `interval` seconds (machine busy time minus this process's CPU time)."""

    def read():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, time.process_time()

    try:
        (busy0, own0), t0 = read(), time.perf_counter()
        time.sleep(interval)
        (busy1, own1), t1 = read(), time.perf_counter()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return max(0.0, ((busy1 - busy0) / ticks - (own1 - own0)) / (t1 - t0))


def wait_until_quiet(threads: int, max_wait: float = 20.0) -> float:
    """Wait until other processes leave at least `threads` cores free; returns the other-process load seen last."""
    cores = os.cpu_count() or 1
    deadline = time.perf_counter() + max_wait
    while True:
        busy = _busy_other_cpus()
        if busy <= max(0.15, cores - threads - 0.1) or time.perf_counter() > deadline:
            return busy
        time.sleep(0.5)


@dataclass
class Timing:
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    peak_bytes: int = 0
    threads: int = 1

    def add(self, wall: float, cpu: float, peak: int):
        self.walls.append(wall)
        self.cpus.append(cpu)
        self.peak_bytes = max(self.peak_bytes, peak)

    def clean(self) -> list[float]:
        # a thread pool never keeps every core busy on tiny ops, so "clean" is judged per thread count
        ratio = 0.85 if self.threads == 1 else 0.6
        return [w for w, c in zip(self.walls, self.cpus, strict=True) if c >= ratio * min(self.threads, 2) * w]

    @property
    def best(self) -> float:
        clean = self.clean()
        return min(clean) if clean else min(self.walls)

    @property
    def is_clean(self) -> bool:
        return bool(self.clean())


def timed_run(fn, timing: Timing, quiet_wait: float = 20.0):
    """Run `fn()` once, timed (wall, CPU) and with its peak memory, after waiting for a quiet machine."""
    wait_until_quiet(timing.threads, quiet_wait)
    with PeakMemory() as memory:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = fn()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    timing.add(wall, cpu, memory.peak_bytes)
    return result


def matmul_flops_per_second(size: int = 2048, repeats: int = 5) -> float:
    """fp32 GEMM rate of this machine at the current thread count (best of `repeats` square matmuls)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of scaled-dot-product attention (QK^T and AV: 2 x 2 x batch x heads x queries x keys x head dim)."""
    *batch, q_len, head_dim = query_shape
    return 4 * math.prod(batch) * q_len * key_shape[-2] * head_dim


# CPU attention ops FlopCounterMode has no rule for (it counts the CUDA flash and memory-efficient kernels itself)
CPU_ATTENTION_OPS = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math")


def attention_flop_mapping() -> dict:
    """`count_flops` rules for CPU attention. FlopCounterMode looks a rule up by the op's overload packet
    (`torch.ops.aten.X`), not by one overload (`torch.ops.aten.X.default`): a rule keyed by the overload is never
    used, and CPU attention counted 0."""
    aten = torch.ops.aten
    return {getattr(aten, name): sdpa_flops for name in CPU_ATTENTION_OPS if hasattr(aten, name)}


def count_flops(fn, mapping: dict) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())
