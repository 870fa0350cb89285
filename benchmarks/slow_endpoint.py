"""Slow-endpoint benchmark: N tests that each call a slow (optionally rate-limited) LLM endpoint.

    python benchmarks/slow_endpoint.py [--tests 2000] [--latency-s 1.0] [--rate-per-s R]
        [--cap 400] [--workers 1] [--processes P] [--threads T] [--max-retries 3]
        [--max-concurrency C] [--requests-per-minute R] [--limit-key K] [--tracing]

The real workload is slow I/O (docs: DESIGN "The real workload is slow I/O"): a test is an
HTTP call that waits 0.5-30 s, behind a provider's rate limit. One invocation starts the
stand-in endpoint (benchmarks/endpoint.py, its own process), then:

* the yardstick: one asyncio process, one aiohttp ClientSession (TCPConnector(limit=0)),
  an asyncio.Semaphore of ``--cap``, the same N requests (a 429 is retried after its
  Retry-After, up to ``--max-retries`` times, as the run's tests are; with
  ``--rate-per-s`` the requests are paced at that rate, as a client that knows the limit
  would: unpaced, 400 waiting out the same Retry-After stampede together and lose most
  tests): wall time, the endpoint's peak in flight;
* the same N tests as a rhesis run: a fresh database, ``rhesis-pipeline migrate``,
  ``--workers`` separate ``rhesis-pipeline worker`` commands with their default settings
  (``-p``/``-t`` only with ``--processes``/``--threads``), one run with the http executor
  pointed at the endpoint: wall time from launch to finished, its ratio to the yardstick,
  passed/failed/error, the endpoint's peak in flight, requests and 429s, each worker
  process's peak RSS (VmRSS sampled every 0.5 s; and the kernel's high-water mark, VmHWM)
  and CPU seconds (utime + stime at the end).

``--max-concurrency``, ``--requests-per-minute`` and ``--limit-key`` go into the executor
spec; a version that does not accept them gets one ``unavailable:`` line and no rhesis phase.
``--tracing`` runs the rhesis phase twice, tracing off then on (the workers export by
OTLP/HTTP to a local receiver in this process): the cost of tracing on the real workload.
Prints, asserts nothing. Uses BENCH_DATABASE_URL, else the local server, else an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from benchmarks.common import child_pids, fresh_database, machine, rss_mib, service
from benchmarks.endpoint import SlowEndpoint
from benchmarks.otlp_receiver import OtlpReceiver

READY = "Worker process is ready for action."
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def retry_after_s(headers: Mapping[str, str]) -> float:
    """The wait a 429 asks for: retry-after-ms, else Retry-After in seconds, else 1 s."""
    with contextlib.suppress(KeyError, ValueError):
        return float(headers["retry-after-ms"]) / 1000
    with contextlib.suppress(KeyError, ValueError):
        return float(headers["Retry-After"])
    return 1.0


async def yardstick(
    url: str, n: int, cap: int, max_retries: int, pace_per_s: float | None = None
) -> collections.Counter[int | str]:
    """N requests from one asyncio process, at most *cap* at once; the final status of each
    (a 429 is retried after its Retry-After, holding its slot, up to *max_retries* times).
    With *pace_per_s*, attempts start at most that often: a client that knows the limit."""
    outcomes: collections.Counter[int | str] = collections.Counter()
    semaphore = asyncio.Semaphore(cap)
    next_start = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int) -> None:
            nonlocal next_start
            async with semaphore:
                for attempt in range(max_retries + 1):
                    if pace_per_s:  # reserve the next start (no await in between: no race)
                        now = time.monotonic()
                        at, next_start = max(next_start, now), max(next_start, now) + 1 / pace_per_s
                        await asyncio.sleep(at - now)
                    status: int | str  # the HTTP status, or the client error's name
                    try:
                        async with session.post(url, json={"prompt": f"test {i}"}) as response:
                            await response.read()
                            status, wait = response.status, retry_after_s(response.headers)
                    except aiohttp.ClientError as e:
                        status, wait = type(e).__name__, 1.0
                    if status == 200 or attempt == max_retries:
                        outcomes[status] += 1
                        return
                    await asyncio.sleep(wait)

        await asyncio.gather(*(one(i) for i in range(n)))
    return outcomes


def cpu_s(pid: int) -> float:
    """utime + stime of *pid* (/proc/PID/stat), in seconds."""
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat


def high_water_mib(pid: int) -> float:
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    """Every 0.5 s, the VmRSS of each child process of the worker commands; the peaks."""

    def __init__(self, commands: list[subprocess.Popen[bytes]]) -> None:
        super().__init__(daemon=True)
        self.commands = commands
        self.peaks: dict[int, float] = {}  # pid -> MiB
        self.owner: dict[int, int] = {}  # pid -> worker command number (1-based)
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            for number, command in enumerate(self.commands, 1):
                for pid in child_pids(command.pid):
                    with contextlib.suppress(OSError, RuntimeError):  # it may just have exited
                        self.peaks[pid] = max(self.peaks.get(pid, 0.0), rss_mib(pid))
                        self.owner[pid] = number
            if self.done.wait(0.5):
                return


def executor_spec(args: argparse.Namespace, url: str) -> tuple[dict[str, Any], list[str]]:
    spec = {
        "type": "http",
        "url": url,
        "body": {"prompt": "{{prompt}}"},
        "response_path": "$.answer",
        "timeout_s": max(30.0, 3 * args.latency_s),
    }
    limits = {
        "max_concurrency": args.max_concurrency,
        "requests_per_minute": args.requests_per_minute,
        "limit_key": args.limit_key,
    }
    given = {k: v for k, v in limits.items() if v is not None}
    return {**spec, **given}, list(given)


def rhesis_phase(
    args: argparse.Namespace, ep: SlowEndpoint, yard_s: float, env: dict[str, str] | None = None
) -> int:
    """The rhesis run of the workload; *env*: the workers' extra environment."""
    from rhesis_pipeline.errors import InvalidSubmission
    from rhesis_pipeline.execution.executors import validate_executor
    from rhesis_pipeline.runs.read import get_run
    from rhesis_pipeline.runs.submit import launch_test_run

    spec, limits = executor_spec(args, ep.url)
    try:
        validate_executor(spec)
    except InvalidSubmission as e:
        if limits and "unknown key" in str(e):
            print(
                f"unavailable: this version does not accept {', '.join(limits)} in the "
                f"executor spec ({e}); the rhesis phase is skipped"
            )
            return 0
        print(f"error: the executor spec: {e}")
        return 1
    script = Path(sys.executable).parent / "rhesis-pipeline"
    extra = [] if args.processes is None else ["-p", str(args.processes)]
    extra += [] if args.threads is None else ["-t", str(args.threads)]
    processes = args.processes or int(
        os.environ.get("RHESIS_WORKER_PROCESSES") or os.cpu_count() or 1
    )
    with fresh_database() as (url, _where), contextlib.ExitStack() as stack:
        migrated = subprocess.run(
            [str(script), "migrate"], env={**os.environ, "DATABASE_URL": url},
            capture_output=True, text=True,
        )  # fmt: skip
        if migrated.returncode != 0:
            print(f"error: rhesis-pipeline migrate: {migrated.stderr.strip().splitlines()[-1]}")
            return 1
        commands = []
        for number in range(1, args.workers + 1):
            log_name = f".slow_endpoint.worker{number}.log"
            try:
                commands.append(
                    stack.enter_context(
                        service(url, [str(script), "worker", *extra], log_name=log_name,
                                ready=READY, count=processes, env=env)
                    )
                )  # fmt: skip
            except RuntimeError:
                print(f"error: worker {number} did not start; see benchmarks/{log_name}")
                return 1
        sampler = RssSampler(commands)
        sampler.start()
        ep.reset()
        tests = ({"id": i, "prompt": f"test {i}"} for i in range(args.tests))
        started = time.time()
        try:
            run_id = launch_test_run(
                tests, executor=spec, name="slow-endpoint",
                options={"max_retries": args.max_retries},
            )  # fmt: skip
        except InvalidSubmission as e:
            print(f"error: the run was refused: {e}")
            return 1
        deadline = time.monotonic() + args.timeout_s
        while (run := get_run(run_id)).finished_at is None:  # set by the callback
            if time.monotonic() > deadline:
                print(f"error: run {run_id} not finished after {args.timeout_s:.0f} s: {run}")
                break
            time.sleep(0.1)
        stats = ep.stats()
        cpu = {pid: cpu_s(pid) for command in commands for pid in child_pids(command.pid)}
        hwm = {pid: high_water_mib(pid) for pid in cpu}
        sampler.done.set()
        sampler.join()
    wall = (run.finished_at.timestamp() if run.finished_at else time.time()) - started
    others = ", ".join(
        f"{name} {value}" for name, value in (("lost", run.lost), ("cancelled", run.cancelled))
        if value
    )  # fmt: skip
    lost = args.tests - run.passed
    caveat = f", not comparable: {lost:,} tests did not pass" if lost else ""
    print(
        f"rhesis run: {args.tests:,} tests in {wall:.1f} s, {wall / yard_s:.1f}x the yardstick"
        f"{caveat} "
        f"({run.status}: passed {run.passed}, failed {run.failed}, error {run.errored}"
        f"{', ' + others if others else ''}); endpoint: peak in flight "
        f"{stats['peak_in_flight']}, requests {stats['requests']:,}, "
        f"429s {stats['answered_429']:,}"
    )
    for pid in sorted(cpu):
        print(
            f"  worker {sampler.owner.get(pid, '?')} process {pid}: peak RSS "
            f"{sampler.peaks.get(pid, float('nan')):.0f} MiB sampled ({hwm[pid]:.0f} MiB "
            f"VmHWM), CPU {cpu[pid]:.1f} s"
        )
    return 0 if run.finished_at else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--latency-s", type=float, default=1.0)
    parser.add_argument("--rate-per-s", type=int, default=None, help="endpoint: 429 beyond it")
    parser.add_argument("--cap", type=int, default=400, help="the yardstick's semaphore")
    parser.add_argument("--workers", type=int, default=1, help="rhesis-pipeline worker commands")
    parser.add_argument("--processes", type=int, default=None, help="-p of each (default: its)")
    parser.add_argument("--threads", type=int, default=None, help="-t of each (default: its)")
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--max-concurrency", type=int, default=None)
    parser.add_argument("--requests-per-minute", type=int, default=None)
    parser.add_argument("--limit-key", default=None)
    parser.add_argument("--timeout-s", type=float, default=900, help="for the rhesis run")
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="the rhesis run twice: tracing off, then on (OTLP to a local receiver)",
    )
    args = parser.parse_args()
    if min(args.tests, args.cap, args.workers) < 1 or args.latency_s < 0:
        parser.error("--tests, --cap and --workers must be positive, --latency-s >= 0")
    # SIGTERM unwinds like Ctrl-C: the workers (their own session), the endpoint and the
    # database are cleaned up by the context managers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # --cap connections
    threads = args.threads or os.environ.get("RHESIS_WORKER_THREADS", "8 (default)")
    processes = args.processes or os.environ.get(
        "RHESIS_WORKER_PROCESSES", f"{os.cpu_count()} (default: CPUs)"
    )
    limits = {k: v for k, v in vars(args).items() if k in ("max_concurrency",
              "requests_per_minute", "limit_key") and v is not None}  # fmt: skip
    print(f"machine: {machine()}")
    print(
        f"settings: {args.tests:,} tests, latency {args.latency_s} s, rate limit "
        f"{f'{args.rate_per_s}/s' if args.rate_per_s else 'none'}, max_retries "
        f"{args.max_retries}; yardstick cap {args.cap}; {args.workers} x rhesis-pipeline worker "
        f"({processes} processes x {threads} threads); executor limits {limits or 'none'}",
        flush=True,
    )
    try:
        with SlowEndpoint(latency_s=args.latency_s, rate_per_s=args.rate_per_s) as ep:
            started = time.perf_counter()
            outcomes = asyncio.run(
                yardstick(ep.url, args.tests, args.cap, args.max_retries, args.rate_per_s)
            )
            yard_s = time.perf_counter() - started
            stats = ep.stats()
            print(
                f"yardstick (one asyncio process, aiohttp, semaphore {args.cap}"
                f"{f', paced at {args.rate_per_s}/s' if args.rate_per_s else ''}): "
                f"{args.tests:,} requests in {yard_s:.2f} s; final statuses "
                f"{dict(outcomes)}; endpoint: peak in flight {stats['peak_in_flight']}, "
                f"requests {stats['requests']:,}, 429s {stats['answered_429']:,}",
                flush=True,
            )
            if not args.tracing:
                return rhesis_phase(args, ep, yard_s)
            with OtlpReceiver() as receiver:  # the same run, tracing off then on
                failed = 0
                traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
                for mode, env in (("off", {}), ("on", traced)):
                    print(f"tracing {mode}:", flush=True)
                    failed |= rhesis_phase(args, ep, yard_s, env)
                print(f"receiver: {len(receiver.spans()):,} spans in "
                      f"{receiver.requests:,} export requests")  # fmt: skip
                return failed
    except KeyboardInterrupt:
        print("interrupted (workers, endpoint and database cleaned up)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
