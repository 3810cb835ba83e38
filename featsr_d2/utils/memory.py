"""CPU peak-memory measurement for benchmarks: the rise of the process's peak resident set size.

Linux only: the peak (VmHWM) is reset to the current RSS through ``/proc/self/clear_refs``, so a
measurement covers exactly the call. Run each measurement in a fresh process for comparable
figures (allocator caches from earlier calls would hide memory otherwise).
"""

import contextlib
import sys

__all__ = ["measure_peak_rss_rise", "status_kib"]


def status_kib(key: str) -> int:
    """A ``/proc/self/status`` figure in KiB (``VmRSS``, ``VmHWM``, ...)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        raise RuntimeError(
            "CPU peak memory is measured through /proc/self (Linux); not available on "
            f"{sys.platform}"
        ) from None
    raise KeyError(f"{key} is not in /proc/self/status")


@contextlib.contextmanager
def measure_peak_rss_rise():
    """``with measure_peak_rss_rise() as peak: ...``; afterwards ``peak["bytes"]`` holds how far
    the peak resident set size rose above the RSS at entry."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = status_kib("VmRSS")
    result = {"bytes": 0}
    yield result
    result["bytes"] = (status_kib("VmHWM") - before) * 1024
