#!/usr/bin/env python3
"""Metadata operations per second on a mounted directory, as FINDINGS
measured JuiceFS: P processes, each N files in its own directory; create
(open O_CREAT|O_EXCL + close), stat, readdir (each process lists its
directory again and again for READDIR_SECONDS; rate in entries/s), rename,
unlink. A measurement, not a test.

The readdir phase is timed, not counted: ten listings of 1,000 entries
took 40-80 ms on a cached directory, short enough for one scheduling
hiccup to move the rate by a fifth (Redis's 4-process row read 1.20 and
1.59 times JuiceFS in two runs of one day).

The stat phase starts STAT_PAUSE seconds after the creates, when the
kernel's attribute and entry caches (1 s by default, for jfs and JuiceFS
alike) have expired: each stat then reaches the file system (a LOOKUP),
as the stat of a file not touched in the last second does. Without the
pause the kernel answers stats of files created in the last second for
both, and the phase measures the kernel. METABENCH_STAT_PAUSE=0 measures
that instead.

    ci/metabench.py DIR [PROCESSES] [FILES_PER_PROCESS] [shared]

With `shared`, all processes work in DIR itself (names PID-p0-f1, ...), so
several runs on several mounts can share one directory.
"""
import os
import sys
import time
from multiprocessing import Pool


READDIR_SECONDS = float(os.environ.get("METABENCH_READDIR_SECONDS", "1.0"))
STAT_PAUSE = float(os.environ.get("METABENCH_STAT_PAUSE", "1.5"))


def phase(args):
    name, d, n = args
    if name == "create":
        for i in range(n):
            os.close(os.open(f"{d}f{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    elif name == "stat":
        for i in range(n):
            os.stat(f"{d}f{i}")
    elif name == "readdir":
        entries, until = 0, time.monotonic() + READDIR_SECONDS
        while time.monotonic() < until:
            with os.scandir(d if os.path.isdir(d) else os.path.dirname(d)) as it:
                for _ in it:
                    entries += 1
        return entries
    elif name == "rename":
        for i in range(n):
            os.rename(f"{d}f{i}", f"{d}g{i}")
    elif name == "unlink":
        for i in range(n):
            os.unlink(f"{d}g{i}")
    return n


def main():
    root = sys.argv[1]
    procs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    shared = len(sys.argv) > 4 and sys.argv[4] == "shared"
    base = os.path.join(root, f"metabench-{os.getpid()}")
    if shared:
        dirs = [f"{root}/{os.getpid()}-p{p}-" for p in range(procs)]
    else:
        dirs = [f"{base}/p{p}/" for p in range(procs)]
        for d in dirs:
            os.makedirs(d)
    results = []
    with Pool(procs) as pool:
        for name in ["create", "stat", "readdir", "rename", "unlink"]:
            if name == "readdir" and shared:
                continue
            if name == "stat":
                time.sleep(STAT_PAUSE)
            start = time.monotonic()
            done = sum(pool.map(phase, [(name, d, n) for d in dirs]))
            results.append((name, done / (time.monotonic() - start)))
    if not shared:
        for d in dirs:
            os.rmdir(d)
        os.rmdir(base)
    print(" ".join(f"{name}={rate:.0f}/s" for name, rate in results))


if __name__ == "__main__":
    main()
