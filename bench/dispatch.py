"""Benchmark: the send run (`newsletter send`, ledger on) against a bare smtplib loop, and peak memory.

    python bench/dispatch.py                      # 10,000 messages, 5 rounds; memory with 100,000
    python bench/dispatch.py --messages 2000 --rounds 7 --memory-recipients 20000

Starts Postfix's `smtp-sink` on 127.0.0.1 (aiosmtpd in a subprocess where
Postfix is absent) and, in one run:

1. in a child process, sends to M recipients and reports its peak RSS
   (`ru_maxrss` of the child), so memory is measured for a whole send;
2. then, in each of N rounds, in turn:
   a. sends N messages through `send_issue` with the smtp transport, 1 connection;
   b. the same with 4 connections;
   c. sends the same messages, built once beforehand, with a bare smtplib loop
      over one connection (the floor any sender pays for SMTP on this machine).

Each figure is the median of the rounds with min-max, and each ratio is of
the medians measured in this run. Each newsletter run starts from an empty
ledger and includes everything a real run does: streaming the lists into the
ledger, rendering, building each personal message, sending, recording.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rounds import MIN_ROUNDS, interleaved, machine_line, median_range

from newsletter.audience.lists import iter_audience
from newsletter.core.project import Project, init_project, open_project
from newsletter.delivery.send import SendOptions, send_issue
from newsletter.render.message import build_message, message_bytes
from newsletter.render.variants import Renderer

ISSUE = "2023-05-panel-reports"
AGENCIES = ("health", "police", "education", "childrens-social-care", "adults-social-care")
SMTP_SINK = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_sink() -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    sink = next((p for p in SMTP_SINK if Path(p).exists()), None)
    if sink is not None:
        command = [sink]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]
        command += [f"127.0.0.1:{port}", "1024"]
        name = "postfix smtp-sink"
    else:
        command = [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink"]
        command += ["-l", f"127.0.0.1:{port}"]
        name = "aiosmtpd (Postfix not installed)"
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port, name
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{name} did not start")


def make_project(root: Path, recipients: int, port: int) -> Project:
    """The sample project with one list of `recipients` people, pointing at the sink."""
    init_project(root)
    lists = root / "recipients" / "lists"
    header = "email,name,organisation,agency,role,district\n"
    for other in lists.glob("*.csv"):
        other.write_text(header, encoding="utf-8")
    with (lists / "comms.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header.strip().split(","))
        for i in range(recipients):
            agency = AGENCIES[i % len(AGENCIES)]
            writer.writerow(
                [
                    f"person{i}@example.org",
                    f"Person {i}",
                    "Example Org",
                    agency,
                    "practitioner",
                    "North",
                ]
            )
    environ = {
        **os.environ,
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(port),
        "NEWSLETTER_SMTP_SECURITY": "none",
    }
    return open_project(root, environ)


def newsletter_run(project: Project, connections: int) -> tuple[float, int]:
    shutil.rmtree(project.settings.ledger_path.parent, ignore_errors=True)
    issue = project.load_issue(ISSUE)
    start = time.perf_counter()
    result = send_issue(
        project, issue, SendOptions(transport="smtp", concurrency=connections, rate=0)
    )
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"the newsletter run failed: {result.as_dict()}")
    return elapsed, result.sent


def prepared_messages(project: Project) -> list[tuple[str, bytes]]:
    """The run's messages as (address, bytes), built the way a send builds them (not timed)."""
    issue = project.load_issue(ISSUE)
    renderer = Renderer(project, issue)
    prepared = []
    for recipient, variant in iter_audience(project.audience_source(), issue):
        email = renderer.personalise(variant, recipient)
        prepared.append(
            (
                recipient.email,
                message_bytes(build_message(project.settings, issue, recipient, email)),
            )
        )
    return prepared


def bare_loop(sender: str, prepared: list[tuple[str, bytes]], port: int) -> float:
    """Seconds for smtplib to send the prepared messages over one connection."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as connection:
        for address, data in prepared:
            connection.sendmail(sender, [address], data)
    return time.perf_counter() - start


def peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM), which, unlike ru_maxrss, starts afresh at exec."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_child(root: str, port: str) -> None:
    project = make_project(Path(root), int(os.environ["BENCH_RECIPIENTS"]), int(port))
    elapsed, sent = newsletter_run(project, 2)
    print(f"child: sent {sent} in {elapsed:.1f} s ({sent / elapsed:.0f} msg/s)", flush=True)
    print(f"PEAK_RSS_KB {peak_rss_kb()}", flush=True)


def measure_memory(work: Path, port: int, recipients: int) -> None:
    child = subprocess.run(
        [sys.executable, __file__, "--child", str(work / "memory"), str(port)],
        env={**os.environ, "BENCH_RECIPIENTS": str(recipients)},
        check=True,
        capture_output=True,
        text=True,
    )
    peak_kb = 0
    for line in child.stdout.splitlines():
        if line.startswith("PEAK_RSS_KB "):
            peak_kb = int(line.split()[1])
        else:
            print(line)
    print(f"peak RSS of a {recipients}-recipient send: {peak_kb / 1024:.0f} MB (target <= 100 MB)")


def report(messages: int, seconds: dict[str, list[float]]) -> None:
    rates = {name: [messages / s for s in values] for name, values in seconds.items()}
    median = {name: statistics.median(values) for name, values in rates.items()}
    lines = (
        ("one", "newsletter, 1 connection: "),
        ("four", "newsletter, 4 connections:"),
        ("bare", "bare smtplib loop:         "),
    )
    for name, label in lines:
        print(
            f"{label} {messages} messages in {statistics.median(seconds[name]):.1f} s "
            f"= {median_range(rates[name], '{:.0f}')} msg/s"
        )
    for name, label, target in (
        ("one", "1 connection", ">= 0.8x"),
        ("four", "4 connections", "> 1x"),
    ):
        per_round = [a / b for a, b in zip(rates[name], rates["bare"])]
        print(
            f"ratio {label} / bare:  {median[name] / median['bare']:.2f}x of the medians "
            f"(per round {median_range(per_round, '{:.2f}')}; target {target})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--memory-recipients", type=int, default=100_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(*args.child)
        return

    sink, port, sink_name = start_sink()
    work = Path(tempfile.mkdtemp(prefix="newsletter-bench-"))
    try:
        print(machine_line())
        print(f"sink: {sink_name} on 127.0.0.1:{port}")
        # Memory first: the bare loop below holds every pre-built message.
        if args.memory_recipients:
            measure_memory(work, port, args.memory_recipients)
        if not args.messages:
            return
        if args.rounds < MIN_ROUNDS:
            print(f"{args.rounds} round(s): a building block (compare_revisions.py), not a figure")
        project = make_project(work / "project", args.messages, port)
        prepared = prepared_messages(project)
        sender = project.settings.from_address

        def timed_send(connections: int) -> float:
            seconds, sent = newsletter_run(project, connections)
            if sent != len(prepared):
                raise SystemExit(f"sent {sent} of {len(prepared)}")
            return seconds

        seconds = interleaved(
            args.rounds,
            {
                "one": lambda: timed_send(1),
                "four": lambda: timed_send(4),
                "bare": lambda: bare_loop(sender, prepared, port),
            },
        )
        print(f"{args.rounds} rounds, interleaved; median (min-max)")
        report(len(prepared), seconds)
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
