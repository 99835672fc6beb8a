#!/usr/bin/env python3
"""Stat rate on a mounted directory and the CPU each given process spends
per stat (from /proc/PID/stat), three rounds. Creates N files, then waits
1.5 s before each round so the kernel's attribute and entry caches have
expired and every stat reaches the file system. A measurement, not a test.

    ci/statcpu.py DIR N PID[,PID...]      e.g. the mount's and the server's
"""
import os
import sys
import time


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    d, n = sys.argv[1], int(sys.argv[2])
    pids = [int(p) for p in sys.argv[3].split(",")]
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        os.close(os.open(f"{d}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
    for _ in range(3):
        time.sleep(1.5)
        before = [cpu_seconds(p) for p in pids]
        own = time.process_time()
        start = time.monotonic()
        for i in range(n):
            os.stat(f"{d}/f{i}")
        elapsed = time.monotonic() - start
        per = [(cpu_seconds(p) - b) / n * 1e6 for p, b in zip(pids, before)]
        print(f"{n / elapsed:.0f} stats/s; us of CPU per stat: "
              + " ".join(f"{p}={u:.1f}" for p, u in zip(pids, per))
              + f" self={(time.process_time() - own) / n * 1e6:.1f}")


if __name__ == "__main__":
    main()
