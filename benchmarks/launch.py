"""``python -m benchmarks.launch REPORT_PATH ARGV...``: run ARGV, report its own rusage.

Why a launcher: Linux records, at ``exec``, the peak RSS of the memory image being
replaced into the new program's ``ru_maxrss``, and Python's subprocess ``vfork``s, so a
child started straight from the (large) benchmark driver would report the *driver's*
peak RSS. Started from this small process, the child's figure is its own. Imports only
the standard library, so its own footprint (~10 MB) stays below any measured child's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(report: str, argv: list[str]) -> int:
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by wait4: tell Popen, so it does not wait again
    with open(report, "w") as f:
        json.dump(
            {
                "exit_code": code,
                "wall_s": wall,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "max_rss_kb": usage.ru_maxrss,
            },
            f,
        )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
