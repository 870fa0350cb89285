"""Where the time goes: the fan-in workload under py-spy and pg_stat_statements.

    python benchmarks/profile.py [--size 30000] [--processes 2] [--threads 12]
                                 [--rate 50] [--all-threads] [--svg] [--top 15] [--tracing]

Starts the worker processes, warms them up (a run of 1,000), then attaches
``py-spy record`` to each worker process (non-blocking sampling at --rate Hz) and runs
--size no-op tests end to end. By default only the thread holding the GIL is sampled
(``--gil``: where the workers' Python CPU time goes, which is what competes with Postgres
for the 2 cores); --all-threads samples every non-idle thread instead (wall time, waits on
the database included — py-spy counts a thread blocked in a C call such as a
Condition.wait as busy). Writes, into artifacts/profile/: ``worker-<i>.txt`` (collapsed
stacks: one ``frame;frame;... count`` line per stack, what flamegraph.pl, inferno and
speedscope read) and, with --svg, ``worker-<i>.svg`` (py-spy's flame graph, from a second
sampler). On 2 cores py-spy falls behind above ~50 Hz with 2 samplers (it says so in
``worker-<i>.txt.log``): the share of each frame is still right, the sample count lower.

--tracing: the workers trace (OpenTelemetry), exporting to a local OTLP/HTTP receiver in
this process (benchmarks/otlp_receiver.py).

Prints the run's tests/s, then: the top statements of the benchmark's database by total
execution time (pg_stat_statements, reset for this database only before the run; needs
the extension preloaded by the server) — calls, mean ms, total ms, share; and from the
collapsed stacks of all workers, the top leaf frames (self time) and the top inclusive
frames (time in the function or anything it calls), by share of samples.

Uses BENCH_DATABASE_URL, else the local server, else an embedded one; makes and drops its
own database. py-spy needs the right to ptrace the workers (root, or
kernel.yama.ptrace_scope = 0, or CAP_SYS_PTRACE).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    REPO,
    fresh_database,
    has_pg_stat_statements,
    machine,
    query,
    reset_pg_stat_statements,
    server,
    timed_run,
    unavailable,
    worker_pids,
    workers,
)
from benchmarks.otlp_receiver import OtlpReceiver

OUT = REPO / "artifacts" / "profile"

TOP_STATEMENTS = """
SELECT calls, mean_exec_time, total_exec_time,
       total_exec_time / nullif(sum(total_exec_time) OVER (), 0), query
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC
LIMIT %s
"""


def py_spy_exe() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def py_spy_missing(pid: int) -> tuple[str, str] | None:
    """None when py-spy can sample *pid*, else (why not, the line that enables it)."""
    exe = py_spy_exe()
    if not Path(exe).exists():
        return "py-spy is not installed", "pip install -e '.[profile]'"
    try:
        done = subprocess.run(
            [exe, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        )
        if done.returncode == 0:
            return None
        said = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        why = said[-1]
    except subprocess.TimeoutExpired:
        why = "py-spy dump did not answer within 30 s"
    return (
        f"py-spy cannot read worker process {pid}: {why}",
        "sysctl -w kernel.yama.ptrace_scope=0 (or run as root; in a container: --cap-add"
        " SYS_PTRACE)",
    )


@contextmanager
def py_spy(
    pid: int, output: Path, *, fmt: str, rate: int, gil: bool
) -> Iterator[subprocess.Popen[bytes]]:
    """`py-spy record` of *pid* into *output* until the block ends (SIGINT: py-spy then
    writes its file)."""
    exe = py_spy_exe()
    log = output.with_suffix(output.suffix + ".log")
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--format", fmt, "--rate", str(rate),
             "--nonblocking", *(["--gil"] if gil else []), "--output", str(output)],
            stdout=err, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    if not output.exists():
        raise SystemExit(f"py-spy wrote no {output}: {log.read_text(errors='replace')[-2000:]}")


#: "function (path/to/file.py:123)" -> "function (file.py)": lines of one function merged.
FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """A frame without its line number, its file relative to site-packages or the repo
    (the standard library's: file name only)."""
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m["file"]
    if "site-packages/" in file:
        file = file.split("site-packages/", 1)[1]
    elif file.startswith(str(REPO) + "/"):
        file = file[len(str(REPO)) + 1 :]
    elif "/" in file:
        file = file.rsplit("/", 1)[1]
    return f"{m['fn']} ({file})"


def aggregate(paths: list[Path]) -> tuple[Counter[str], Counter[str], int]:
    """(self samples by leaf frame, inclusive samples by frame, total samples) of
    collapsed-stack files."""
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [frame_name(f) for f in stack.split(";")]
            # The first frames are the process and thread ("process 123:..."), not code.
            frames = [f for f in frames if not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            total += count
            leaf[frames[-1]] += count
            for f in set(frames):
                inclusive[f] += count
    return leaf, inclusive, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=30_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=12)
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--all-threads", action="store_true", help="not only the GIL holder")
    parser.add_argument("--svg", action="store_true", help="flame graphs too (2nd sampler)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="workers trace, exporting to a local OTLP/HTTP receiver",
    )
    args = parser.parse_args()
    if args.size < 1 or args.rate < 1 or args.top < 1:
        parser.error("--size, --rate and --top must be positive")
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("worker-*"):
        old.unlink()

    with (
        OtlpReceiver() as receiver,
        fresh_database() as (url, where),
        workers(url, processes=args.processes, threads=args.threads,
                env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint} if args.tracing
                else None) as proc,
    ):  # fmt: skip
        print(f"machine: {machine()}")
        print(f"database: {where}; workers: {args.processes} processes x {args.threads} threads")
        print(server(url, ("shared_preload_libraries",)))
        statements = has_pg_stat_statements(url, "top statements by total time")
        pids = worker_pids(proc, args.processes)
        spy_missing = py_spy_missing(pids[0])
        if spy_missing:
            unavailable("profiles of the worker processes (py-spy)", *spy_missing)
        timed_run(url, 1000)  # warm-up: pools, imports, prepared statements
        if statements:
            reset_pg_stat_statements(url)
        raw = [OUT / f"worker-{i}.txt" for i in range(1, len(pids) + 1)]
        sampling_started = time.monotonic()
        with ExitStack() as stack:
            for i, pid in enumerate([] if spy_missing else pids):
                gil = not args.all_threads
                stack.enter_context(py_spy(pid, raw[i], fmt="raw", rate=args.rate, gil=gil))
                if args.svg:
                    svg = OUT / f"worker-{i + 1}.svg"
                    stack.enter_context(py_spy(pid, svg, fmt="flamegraph", rate=args.rate, gil=gil))
            timed = timed_run(url, args.size)
            sampled_s = time.monotonic() - sampling_started
        print(
            f"{args.size:,} tests{'' if spy_missing else ' under py-spy'}: "
            f"submitted in {timed.submit_s:.2f} s, "
            f"end to end {timed.e2e_s:.2f} s, {args.size / timed.e2e_s:,.0f} tests/s"
        )
        written = [p for p in sorted(OUT.glob("worker-*")) if p.suffix in (".txt", ".svg")]
        if written:
            print("profiles: " + ", ".join(str(p.relative_to(REPO)) for p in written))

        if statements:
            print(f"\ntop {args.top} statements by total time (pg_stat_statements, this database):")
            print(f"{'calls':>9} {'mean ms':>9} {'total ms':>10} {'share':>6}  statement")
            for calls, mean, total, share, text in query(url, TOP_STATEMENTS, (args.top,)):
                one_line = " ".join(text.split())
                print(
                    f"{calls:>9,} {mean:>9.3f} {total:>10.1f} {(share or 0):>6.1%}  "
                    f"{one_line[:110]}"
                )
        if spy_missing:
            return 0
        leaf, inclusive, total = aggregate(raw)
        what = "every non-idle thread" if args.all_threads else "the GIL holder"
        print(f"\npy-spy: {total:,} samples of {what} over {len(raw)} worker processes")
        if not args.all_threads:
            busy = total / (args.rate * sampled_s * len(raw))
            print(
                f"  the GIL was held in ~{busy:.0%} of the sampling instants ({sampled_s:.1f} s at "
                f"{args.rate} Hz per process; an under-estimate if py-spy fell behind)"
            )
        for title, counts in (("leaf frames (self)", leaf), ("inclusive frames", inclusive)):
            print(f"top {args.top} {title}:")
            for frame, count in counts.most_common(args.top):
                print(f"  {count / total:>6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
