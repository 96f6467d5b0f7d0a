"""Benchmark: the whole `newsletter send --send` command against a bare smtplib loop, and memory.

    python bench/dispatch.py                          # 3,000 messages, 5 rounds; memory with 100,000
    python bench/dispatch.py --messages 3000 --rounds 7 --memory-recipients 0
    python bench/dispatch.py --trees OLD NEW ...      # other checkouts, side by side (compare_revisions.py)

Starts Postfix's `smtp-sink` on 127.0.0.1 (aiosmtpd in a subprocess where
Postfix is absent) and, in one run:

1. in a child process, sends to M recipients and reports its peak RSS, so
   memory is measured for a whole send;
2. then, in each of N rounds, in turn:
   a. runs `newsletter send ISSUE --send --yes` as a person types it: a new
      process started through the console script, start-up, reading the
      lists into an empty ledger, rendering, building, sending and recording
      all included, at default settings (one connection, no rate limit);
   b. the same with `--concurrency 4` (four connections);
   c. sends the same messages, built once beforehand and not timed, with
      `smtplib.SMTP.sendmail` over one connection (the bare loop).

Each figure is the median of the rounds with min-max, and each ratio is of
the medians measured in this run. With `--trees`, (a) and (b) run once per
checkout named (its code first on PYTHONPATH), in the same rounds; the
project and the bare loop's messages are always made by this checkout.
"""

from __future__ import annotations

import argparse
import compileall
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
from collections.abc import Callable
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
REPO_DIR = Path(__file__).resolve().parents[1]


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
    """The sample project with one list of `recipients` people, pointing at the sink.

    Its settings are the defaults a new team starts from for sending: the
    sample's `smtp.connections: 2` and `rate.per_second: 10` are taken out.
    """
    init_project(root)
    settings_file = root / "newsletter.yaml"
    text = settings_file.read_text(encoding="utf-8")
    for sample, default in (
        ("transport: outbox ", "transport: smtp   "),
        ("  connections: 2\n", ""),
        ("  per_second: 10\n", ""),
    ):
        if sample not in text:
            raise SystemExit(f"the sample's newsletter.yaml no longer has {sample.strip()!r}")
        text = text.replace(sample, default)
    settings_file.write_text(text, encoding="utf-8")
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
    return open_project(root, sink_environment(port))


def sink_environment(port: int) -> dict[str, str]:
    return {
        **os.environ,
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(port),
        "NEWSLETTER_SMTP_SECURITY": "none",
    }


def newsletter_command() -> list[str]:
    """The console script a person runs, or `python -m newsletter` where it is not installed."""
    script = Path(sys.executable).parent / "newsletter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "newsletter"]


def command_run(
    project: Project, tree: Path, port: int, expected: int, *options: str
) -> Callable[[], float]:
    """Seconds for the whole `newsletter send --send` command, from an empty ledger."""
    environ = sink_environment(port)
    environ["PYTHONPATH"] = os.pathsep.join(
        [str(tree), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    command = [*newsletter_command(), "--root", str(project.root_dir), "send", ISSUE]
    command += ["--send", "--yes", *options]

    def run() -> float:
        shutil.rmtree(project.settings.ledger_path.parent, ignore_errors=True)
        start = time.perf_counter()
        done = subprocess.run(command, env=environ, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0 or f"Sent {expected};" not in done.stdout:
            raise SystemExit(f"{tree}: the send failed:\n{done.stdout}\n{done.stderr}")
        return elapsed

    return run


def newsletter_run(project: Project, connections: int) -> tuple[float, int]:
    """In this process (the memory child): seconds and messages sent."""
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
    elapsed, sent = newsletter_run(project, 1)  # one process: its peak is the send's
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
    width = max(len(name) for name in rates) + 1
    for name in rates:
        print(
            f"{name + ':':{width}} {messages} messages in {statistics.median(seconds[name]):.2f} s "
            f"= {median_range(rates[name], '{:.0f}')} msg/s"
        )
    for name in rates:
        if name == BARE:
            continue
        target = "1.5x" if name.endswith("4 connections") else "1x"
        per_round = [a / b for a, b in zip(rates[name], rates[BARE])]
        print(
            f"ratio {name} / bare: {median[name] / median[BARE]:.2f}x of the medians "
            f"(per round {median_range(per_round, '{:.2f}')}; target at least {target})"
        )


BARE = "bare smtplib loop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--memory-recipients", type=int, default=100_000)
    parser.add_argument(
        "--trees", nargs="+", type=Path, help="checkouts to time (default: this one)"
    )
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
            print(f"{args.rounds} round(s): a trial, not a figure")
        project = make_project(work / "project", args.messages, port)
        prepared = prepared_messages(project)
        sender = project.settings.from_address
        trees = args.trees or [REPO_DIR]
        contenders: dict[str, Callable[[], float]] = {}
        for tree in trees:
            # As pip does on install: without bytecode (PYTHONDONTWRITEBYTECODE, a
            # fresh checkout) every run would compile the whole package first.
            compileall.compile_dir(tree / "newsletter", quiet=1)
            label = "newsletter" if args.trees is None else f"newsletter {tree.name}"
            contenders[f"{label}, 1 connection"] = command_run(project, tree, port, len(prepared))
            contenders[f"{label}, 4 connections"] = command_run(
                project, tree, port, len(prepared), "--concurrency", "4"
            )
        contenders[BARE] = lambda: bare_loop(sender, prepared, port)
        seconds = interleaved(args.rounds, contenders)
        print(f"{args.rounds} rounds, interleaved; median (min-max)")
        report(len(prepared), seconds)
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
