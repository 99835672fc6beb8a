#!/usr/bin/env python3
"""jfs next to JuiceFS, in one run, on the same servers (run by ci/bench.sh,
which starts them and exports their addresses).

Per engine pair (the embedded engine vs JuiceFS on sqlite3://, etcd vs etcd,
Redis vs Redis; data of both on the same S3 server) it formats and mounts
one volume of each and runs on both, phase by phase (each phase on one
client, then on the other, the first alternating; before each, both
mounts are left to finish their background work), so that both clients of
a row are measured minutes apart at most, on the same state of the
machine:
  1. `jfs bench` / `juicefs bench`: big file write and read, small files
     write, read and stat, with -p 1 and -p 4;
  2. fio: sequential write and read (bs 1M), 4 KiB random reads, with a cold
     cache (fresh cache directory, kernel caches dropped) and a warm one;
  3. ci/metabench.py: create, stat, readdir, rename, unlink with 1 and 4
     processes;
  4. the peak RSS of each mount process.
With the embedded pair, the FUSE passthrough ceiling (bindfs over a local
directory) runs the metadata benchmark in the same phases. Prints one
table (jfs, JuiceFS, ratio, target) and writes it as JSON to BENCH_JSON if
set; BENCH_ENGINES=redis,etcd runs only those pairs. BENCH_QUICK=1 shrinks
every size (a rehearsal of the script, not figures).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JFS = os.path.join(REPO, "target/release/jfs")
QUICK = os.environ.get("BENCH_QUICK") == "1"
BIG_MIB = 128 if QUICK else 1024
SMALL_COUNT = 100
FIO_SEQ = "128M" if QUICK else "1G"
FIO_RAND = "64M" if QUICK else "256M"
FIO_RAND_SECS = 5 if QUICK else 20
META_FILES = 200 if QUICK else 1000

# Targets: ratio jfs / JuiceFS that the issue asks for, by row kind.
TARGETS = {"meta-embedded": 2.0, "meta": 1.5, "big": 1.2, "small": 1.5}


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def peak_rss_mib(pid):
    """The process's peak RSS so far (VmHWM), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def pids_serving(path, program):
    """Processes whose command line mounts `path` with `program`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        # JuiceFS rewrites its command line as one space-separated string.
        words = b" ".join(argv).decode(errors="replace").split()
        if words and os.path.basename(words[0]) == program and "mount" in words and path in words:
            found.append(int(pid))
    return found


def cpu_seconds(pid):
    """User and system CPU time of a process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def settle(vols, quiet=0.05, longest=30.0):
    """Waits until every mount of `vols` and the S3 server together used
    less than `quiet` of a core over the last second (deleted files
    reclaimed, uploads done), at most `longest` seconds: one client's
    background work must not slow the other's next phase. The server
    counts too: a client deleting a thousand objects after its bench
    costs its own process little and the server much."""
    pids = [pid for v in vols for pid in v.current]
    if os.environ.get("BENCH_S3_PID"):
        pids.append(int(os.environ["BENCH_S3_PID"]))
    deadline = time.monotonic() + longest
    before = sum(cpu_seconds(p) for p in pids)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = sum(cpu_seconds(p) for p in pids)
        if now - before < quiet:
            return
        before = now
    log(f"mounts still busy after {longest:.0f} s; going on")


class Volume:
    """One mounted volume: jfs or JuiceFS."""

    def __init__(self, kind, meta, name, bucket, work):
        self.kind, self.meta, self.name, self.bucket = kind, meta, name, bucket
        self.path = os.path.join(work, f"{kind}-{name}")
        self.work = work
        self.generation = 0
        # Peak RSS by pid of every process seen serving this volume, and
        # the pids of the current mount. Processes are looked up again at
        # every sample, not once after mounting: JuiceFS serves from a
        # child of its supervisor, and a pid list taken once after mounting
        # gave JuiceFS 77 MiB in two pairs of one run (its supervisor's
        # size) where its serving process reaches 700 MiB and more in
        # `juicefs bench -p 4` on the same servers.
        self.peaks = {}
        self.current = set()
        self.lock = threading.Lock()
        os.makedirs(self.path, exist_ok=True)

    def tool(self):
        return JFS if self.kind == "jfs" else "juicefs"

    def format(self):
        keys = ["--access-key", os.environ["ACCESS_KEY"], "--secret-key", os.environ["SECRET_KEY"]]
        if self.kind == "jfs":
            run([JFS, "format", "--storage", "s3", "--bucket", self.bucket, *keys,
                 "--trash-days", "0", self.meta, self.name])
        else:
            run(["juicefs", "format", "--storage", "s3", "--bucket", self.bucket, *keys,
                 "--trash-days", "0", self.meta, self.name])

    def mount(self):
        """Mounts with a fresh cache directory (a cold cache)."""
        # The previous cache goes: left behind, they fill the disk until the
        # caches' free-space check stops caching (it did once, in the third
        # pair: warm reads then came from S3).
        old = os.path.join(self.work, f"cache-{self.kind}-{self.name}-{self.generation}")
        shutil.rmtree(old, ignore_errors=True)
        self.generation += 1
        cache = os.path.join(self.work, f"cache-{self.kind}-{self.name}-{self.generation}")
        logf = os.path.join(self.work, f"{self.kind}-{self.name}.log")
        if self.kind == "jfs":
            run([JFS, "mount", "-d", "--cache-dir", cache, "--log", logf, self.meta, self.path])
        else:
            run(["juicefs", "mount", "-d", "--cache-dir", cache, "--log", logf,
                 "--no-usage-report", self.meta, self.path])
            for _ in range(100):
                if os.path.ismount(self.path):
                    break
                time.sleep(0.1)
        with self.lock:
            self.current = set()
        self.sample()

    def sample(self):
        """Records the peak RSS of every process now serving the volume."""
        serving = pids_serving(self.path, "jfs" if self.kind == "jfs" else "juicefs")
        with self.lock:
            self.current.update(serving)
            for pid in self.current:
                peak = peak_rss_mib(pid)
                if peak is not None:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), peak)

    def rss(self):
        """The largest peak RSS of the current mount's processes."""
        self.sample()
        return max((self.peaks.get(pid, 0) for pid in self.current), default=0)

    def rss_all(self):
        """The largest peak RSS of every mount of this volume."""
        self.sample()
        return max(self.peaks.values(), default=0)

    def umount(self):
        # The mount processes' peaks, kept before they end.
        self.sample()
        if os.path.ismount(self.path):
            subprocess.run([self.tool(), "umount", self.path], capture_output=True)
        if os.path.ismount(self.path):
            subprocess.run(["umount", "-l", self.path], capture_output=True)


BENCH_ROWS = {
    "Write big file": "big write MiB/s",
    "Read big file": "big read MiB/s",
    "Write small file": "small write files/s",
    "Read small file": "small read files/s",
    "Stat file": "stat files/s",
}


def tool_bench(vol, threads):
    out = run([vol.tool(), "bench", vol.path, "--big-file-size", str(BIG_MIB),
               "--small-file-count", str(SMALL_COUNT), "-p", str(threads)])
    found = {}
    for item, label in BENCH_ROWS.items():
        m = re.search(r"\|\s*" + item + r"\s*\|\s*([\d.]+)", out)
        if m:
            found[f"bench -p {threads}: {label}"] = float(m.group(1))
    return found


def fio(vol, name, rw, bs, size, extra=()):
    path = os.path.join(vol.path, "fio.data")
    out = run(["fio", "--name", name, "--filename", path, "--rw", rw, "--bs", bs,
               "--size", size, "--ioengine", "psync", "--output-format", "json", *extra])
    job = json.loads(out[out.index("{"):])["jobs"][0]
    side = job["write"] if rw in ("write", "randwrite") else job["read"]
    return side["bw_bytes"] / (1 << 20), side["iops"]


def fio_suite(vol):
    found = {}
    mib, _ = fio(vol, "seqwrite", "write", "1M", FIO_SEQ, ["--end_fsync=1"])
    found["fio seq write 1M MiB/s"] = mib
    # Cold: a fresh cache directory and the kernel's caches dropped.
    vol.umount()
    drop_caches()
    vol.mount()
    mib, _ = fio(vol, "seqread", "read", "1M", FIO_SEQ)
    found["fio seq read 1M cold MiB/s"] = mib
    mib, _ = fio(vol, "seqread", "read", "1M", FIO_SEQ)
    found["fio seq read 1M warm MiB/s"] = mib
    os.unlink(os.path.join(vol.path, "fio.data"))
    fio(vol, "prepare", "write", "1M", FIO_RAND, ["--end_fsync=1"])
    vol.umount()
    drop_caches()
    vol.mount()
    timed = ["--time_based", "--runtime", str(FIO_RAND_SECS)]
    _, iops = fio(vol, "randread", "randread", "4k", FIO_RAND, timed)
    found["fio rand read 4K cold IOPS"] = iops
    drop_caches()
    _, iops = fio(vol, "randread", "randread", "4k", FIO_RAND, timed)
    found["fio rand read 4K warm IOPS"] = iops
    os.unlink(os.path.join(vol.path, "fio.data"))
    return found


def metabench(path, procs):
    out = run([sys.executable, os.path.join(REPO, "ci/metabench.py"), path, str(procs),
               str(META_FILES)])
    return {f"meta {procs}p: {k} ops/s": float(v) for k, v in re.findall(r"(\w+)=(\d+)/s", out)}


def kind_of(row, engine):
    if row.startswith("meta"):
        return "meta-embedded" if engine == "embedded" else "meta"
    if "big" in row or "seq" in row:
        return "big"
    if "small" in row or "stat files" in row:
        return "small"
    return None


def pair(engine, jmeta, kmeta, bucket, work, ceiling=None):
    """Both clients on one engine class, phase by phase; `ceiling` (a
    Passthrough) runs the metadata phases too."""
    log(f"{engine}: format and mount")
    vols = [Volume("jfs", jmeta, f"j{engine}", bucket, work),
            Volume("juicefs", kmeta, f"k{engine}", bucket, work)]
    results = {v.kind: {} for v in vols}
    # Samples every mount process twice a second, so a process that ends
    # or is replaced between phases still counts.
    done = threading.Event()

    def sampler():
        while not done.wait(0.5):
            for v in vols:
                v.sample()

    def bench(threads):
        def phase(v):
            found = tool_bench(v, threads)
            log(f"{engine}: {v.kind} peak RSS so far {v.rss_all()} MiB "
                f"(pids and peaks: {sorted(v.peaks.items())})")
            return found
        return f"bench -p {threads}", phase

    def meta(procs):
        return f"metabench {procs}p", lambda v: metabench(v.path, procs)

    phases = [bench(1), bench(4), ("fio", fio_suite), meta(1), meta(4)]
    threading.Thread(target=sampler, daemon=True).start()
    try:
        for v in vols:
            v.format()
            v.mount()
        for n, (name, phase) in enumerate(phases):
            for v in (vols if n % 2 == 0 else vols[::-1]):
                settle(vols)
                log(f"{engine}: {v.kind} {name}")
                results[v.kind].update(phase(v))
            if ceiling is not None and name.startswith("metabench"):
                settle(vols)
                log(f"{engine}: bindfs {name}")
                ceiling.found.update(phase(ceiling))
        for v in vols:
            # The mount serving the last phases (fio random reads and the
            # metadata benchmark), and the largest of every mount process of
            # the run (big files, fio sequential, ...).
            results[v.kind]["peak RSS MiB, last mount (lower is better)"] = v.rss()
            results[v.kind]["peak RSS MiB, all mounts (lower is better)"] = v.rss_all()
    finally:
        done.set()
        for v in vols:
            v.umount()
    rows = []
    for key in results["jfs"]:
        j, k = results["jfs"][key], results["juicefs"].get(key)
        if k is None:
            continue
        ratio = j / k if k else float("inf")
        lower_better = "RSS" in key
        target = 1.0 if lower_better else TARGETS.get(kind_of(key, engine) or "", None)
        met = None if target is None else (ratio <= target if lower_better else ratio >= target)
        rows.append({"engine": engine, "test": key, "jfs": j, "juicefs": k,
                     "ratio": ratio, "target": target, "met": met})
    return rows


class Passthrough:
    """The FUSE ceiling: bindfs over a local directory, for the metadata
    phases of the embedded pair."""

    def __init__(self, work):
        src, self.path = os.path.join(work, "bind-src"), os.path.join(work, "bind-mnt")
        os.makedirs(src)
        os.makedirs(self.path)
        run(["bindfs", src, self.path])
        self.found = {}

    def umount(self):
        subprocess.run(["umount", self.path], capture_output=True)


def main():
    work = tempfile.mkdtemp(prefix="jfs-bench.", dir="/tmp")
    bucket = os.environ["JFS_TEST_S3"]
    rid = str(os.getpid())
    pairs = [("embedded", os.path.join(work, "jfs-meta"), f"sqlite3://{work}/juicefs.db")]
    if os.environ.get("JFS_TEST_ETCD"):
        eps = os.environ["JFS_TEST_ETCD"].split("://")[1].split("/")[0]
        pairs.append(("etcd", f"etcd://{eps}/jb{rid}", f"etcd://{eps}/kb{rid}"))
    if os.environ.get("JFS_TEST_REDIS"):
        r = os.environ["JFS_TEST_REDIS"]
        pairs.append(("redis", f"{r}?prefix=jb{rid}", r.rsplit("/", 1)[0] + "/2"))
    only = os.environ.get("BENCH_ENGINES")
    if only:
        pairs = [p for p in pairs if p[0] in only.split(",")]
    rows = []
    ceiling = {}
    try:
        for engine, jmeta, kmeta in pairs:
            bind = None
            if engine == "embedded" and shutil.which("bindfs") is not None:
                bind = Passthrough(work)
            try:
                rows += pair(engine, jmeta, kmeta, bucket, work, bind)
            finally:
                if bind is not None:
                    bind.umount()
                    ceiling = bind.found
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = open("/proc/loadavg").read().split()[:3]
    print(f"Load average at the end: {' '.join(load)}; {os.cpu_count()} cores; "
          f"sizes: big file {BIG_MIB} MiB, fio {FIO_SEQ} / {FIO_RAND}, {META_FILES} files per process")
    print()
    print("| engine | test | jfs | JuiceFS | jfs / JuiceFS | target | met |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        target = "" if r["target"] is None else (f"<= {r['target']}" if "RSS" in r["test"] else f">= {r['target']}")
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        print(f"| {r['engine']} | {r['test']} | {r['jfs']:,.0f} | {r['juicefs']:,.0f} | "
              f"{r['ratio']:.2f} | {target} | {met} |")
    if ceiling:
        print()
        print("FUSE passthrough ceiling (bindfs of a local directory) and jfs on the embedded engine:")
        print()
        print("| test | bindfs | jfs embedded | jfs / bindfs |")
        print("|---|---|---|---|")
        jfs_emb = {r["test"]: r["jfs"] for r in rows if r["engine"] == "embedded"}
        for test, value in ceiling.items():
            j = jfs_emb.get(test)
            if j:
                print(f"| {test} | {value:,.0f} | {j:,.0f} | {j / value:.2f} |")
    if os.environ.get("BENCH_JSON"):
        with open(os.environ["BENCH_JSON"], "w") as f:
            json.dump({"rows": rows, "passthrough": ceiling, "load": load}, f, indent=1)


if __name__ == "__main__":
    main()
