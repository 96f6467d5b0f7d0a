"""Real `newsletter` processes stopped by what stops them in production.

`systemctl stop` sends SIGTERM, a person presses Ctrl-C, the disk under
`var/` fills up, someone deletes or replaces the ledger while a send runs.
Each must end with one clear line and an exit code that says what happened,
and the next run must finish the job without mailing anyone twice.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import ISSUE, edit_issue, speed_up
from tests.support.smtp import SmtpTestServer

pytestmark = pytest.mark.slow  # real processes through a slow relay, several runs each

SEND_AT = "2023-05-15T09:00:00+01:00"
EVERYONE = 67
REPO = Path(__file__).resolve().parents[2]


class SlowServer(SmtpTestServer):
    """Takes a while over each message, so a run can be caught part-way."""

    delay = 0.06

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        reply: str = await super().handle_DATA(server, session, envelope)
        return reply


@pytest.fixture
def relay(project_dir: Path) -> Iterator[SlowServer]:
    server = SlowServer()
    speed_up(project_dir)
    edit_issue(project_dir, approved=True)
    yield server
    server.stop()


def environment(server: SmtpTestServer) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "NEWSLETTER_TRANSPORT": "smtp",
        "NEWSLETTER_SMTP_HOST": server.host,
        "NEWSLETTER_SMTP_PORT": str(server.port),
        "NEWSLETTER_SMTP_SECURITY": "none",
    }


def command(project_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", "--root", str(project_dir), *args]


def finish(project_dir: Path, server: SlowServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a command to the end, its output kept.

    The relay answers at once meanwhile: only a run caught part-way needs it slow.
    """
    delay, server.delay = server.delay, 0
    try:
        return subprocess.run(
            command(project_dir, *args),
            env=environment(server),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.delay = delay


SEND = ("send", ISSUE, "--send", "--yes")
DISPATCH = ("dispatch", "--now", SEND_AT)
RETRY = ("retry", ISSUE)


def start(
    project_dir: Path, server: SmtpTestServer, *args: str, **popen: Any
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(project_dir, *args),
        env=environment(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def wait_for_messages(server: SmtpTestServer, process: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while len(server.messages) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.01)


def ledger_states(project_dir: Path) -> Counter[str]:
    conn = sqlite3.connect(project_dir / "var" / "ledger.sqlite3")
    states = Counter(state for (state,) in conn.execute("SELECT state FROM deliveries"))
    conn.close()
    return states


def assert_everyone_once(server: SmtpTestServer) -> None:
    received = server.by_recipient()
    assert len(received) == EVERYONE
    repeated = {address: len(c) for address, c in received.items() if len(c) > 1}
    assert repeated == {}, f"mailed more than once: {repeated}"


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


def use_connections(project_dir: Path, connections: int) -> None:
    """`smtp.connections` (the sample has 2: without a rate limit, two sending processes)."""
    path = project_dir / "newsletter.yaml"
    text = path.read_text(encoding="utf-8")
    assert "  connections: 2\n" in text
    path.write_text(text.replace("  connections: 2\n", f"  connections: {connections}\n"))


def sending_processes(run: subprocess.Popen[str]) -> list[int]:
    """The pids of a running `newsletter` process's children (Linux)."""
    children = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text(encoding="ascii")
    return [int(pid) for pid in children.split()]


# --- SIGTERM and Ctrl-C ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "signum", "again"),
    [
        (SEND, signal.SIGTERM, "run the same command again to continue"),
        (SEND, signal.SIGINT, "run the same command again to continue"),
        (DISPATCH, signal.SIGTERM, "the next dispatch carries on"),
    ],
    ids=["send-SIGTERM", "send-Ctrl-C", "dispatch-SIGTERM"],
)
@pytest.mark.parametrize("connections", [1, 2], ids=["one-thread", "two-sending-processes"])
def test_a_signal_stops_the_run_cleanly_and_the_same_command_finishes_without_repeats(
    project_dir: Path,
    relay: SlowServer,
    args: tuple[str, ...],
    signum: int,
    again: str,
    connections: int,
) -> None:
    use_connections(project_dir, connections)
    run = start(project_dir, relay, *args)
    wait_for_messages(relay, run, 15)
    run.send_signal(signum)
    out, err = run.communicate(timeout=60)

    assert run.returncode == 128 + signum, (out, err)
    no_traceback(out, err)
    stopped = out + err
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    assert f"stopped by {name}" in stopped and again in stopped
    states = ledger_states(project_dir)
    assert states["sending"] == 0  # everything in flight was finished and recorded
    assert states["sent"] == len(relay.messages) < EVERYONE
    assert f"{states['sent']} sent in this run" in stopped

    if args == DISPATCH:  # the lock went with the process: the next tick is not refused
        assert "dispatch.lock" not in stopped
    rerun = finish(project_dir, relay, *args)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_everyone_once(relay)
    assert ledger_states(project_dir) == {"sent": EVERYONE, "suppressed": 4}


def test_retry_stopped_by_sigterm_exits_143_and_finishes_next_time(
    project_dir: Path, relay: SlowServer
) -> None:
    # Every delivery fails for now (one try each), so `retry` has everyone to do.
    path = project_dir / "newsletter.yaml"
    path.write_text(path.read_text().replace("max_attempts: 5", "max_attempts: 1"))
    relay.fail("*", 451, times=EVERYONE)
    first = finish(project_dir, relay, *SEND)
    assert first.returncode == 1 and ledger_states(project_dir)["failed-temporary"] == EVERYONE

    run = start(project_dir, relay, *RETRY)
    wait_for_messages(relay, run, 10)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 143, (out, err)
    no_traceback(out, err)
    assert "stopped by SIGTERM" in err and ledger_states(project_dir)["sending"] == 0

    rerun = finish(project_dir, relay, *RETRY)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_everyone_once(relay)


# --- the ledger's file under a running send ------------------------------------------


@pytest.mark.parametrize("change", ["replaced", "deleted"])
def test_a_ledger_replaced_or_deleted_mid_send_stops_the_run(
    project_dir: Path, relay: SlowServer, change: str
) -> None:
    ledger = project_dir / "var" / "ledger.sqlite3"
    run = start(project_dir, relay, *SEND)
    wait_for_messages(relay, run, 10)
    if change == "replaced":  # e.g. an old backup restored over it
        backup = project_dir / "var" / "backup.sqlite3"
        source = sqlite3.connect(ledger)
        target = sqlite3.connect(backup)
        source.backup(target)
        source.close()
        target.close()
        os.replace(backup, ledger)
    else:
        ledger.unlink()
    out, err = run.communicate(timeout=60)

    assert run.returncode == 1, (out, err)
    no_traceback(out, err)
    (line,) = err.strip().splitlines()
    assert f"was {change}" in line and str(ledger) in line
    assert "Sent" not in out
    # It stopped: only what was in flight when it noticed went out after the change.
    assert len(relay.messages) < EVERYONE


# --- a full disk under var/ ------------------------------------------------------------

# A real filesystem that fills up: a small tmpfs mounted over var/ in a private
# mount namespace (util-linux `unshare`, no root needed where user namespaces are
# allowed). The ledger is copied in first and copied back out afterwards.
ON_SMALL_DISK = """
set -e
mkdir -p "$SAVED"
cp -a var/. "$SAVED"/
mount -t tmpfs -o size="$SIZE" tmpfs var
cp -a "$SAVED"/. var/
set +e
"$@"
status=$?
rm -rf "$SAVED"/*
cp -a var/. "$SAVED"/
exit $status
"""


def test_a_full_disk_stops_the_run_with_one_line_and_the_rerun_repeats_nobody(
    project_dir: Path, relay: SlowServer, tmp_path: Path
) -> None:
    # A first run creates the ledger with everyone in it; then the disk is nearly full.
    first = finish(project_dir, relay, *SEND, "--limit", "5")
    assert first.returncode == 0, first.stderr
    var = project_dir / "var"
    used = sum(f.stat().st_size for f in var.iterdir())
    saved = tmp_path / "saved"
    env = {**environment(relay), "SAVED": str(saved), "SIZE": f"{used // 1024 + 96}k"}
    full = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", ON_SMALL_DISK, "sh",
         *command(project_dir, *SEND)],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip

    assert full.returncode == 1, (full.stdout, full.stderr)
    no_traceback(full.stdout, full.stderr)
    (line,) = full.stderr.strip().splitlines()
    assert "cannot write the delivery ledger" in line and "(is it full?)" in line
    assert "run the same command again to continue" in line
    sent_before = len(relay.messages)
    assert 5 <= sent_before < EVERYONE  # it really stopped part-way
    shutil.rmtree(var)
    shutil.copytree(saved, var)

    rerun = finish(project_dir, relay, *SEND)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_everyone_once(relay)


# --- what happens to people while a run goes on ------------------------------------------


def pending_addresses(project_dir: Path) -> list[str]:
    """The addresses the running send has not claimed yet, in the order it will claim them."""
    conn = sqlite3.connect(project_dir / "var" / "ledger.sqlite3")
    rows = conn.execute("SELECT email FROM deliveries WHERE state = 'pending' ORDER BY seq")
    found = [email for (email,) in rows]
    conn.close()
    return found


def test_someone_who_unsubscribes_during_a_slow_send_is_not_sent_to(
    project_dir: Path, relay: SlowServer
) -> None:
    relay.delay = 0.25  # a run that lasts a while, as Microsoft 365's limits make it
    run = start(project_dir, relay, *SEND)
    wait_for_messages(relay, run, 5)
    leaving = pending_addresses(project_dir)[-1]  # the last person this run will come to
    unsubscribed = subprocess.run(
        command(project_dir, "unsubscribe", leaving),
        env=environment(relay),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unsubscribed.returncode == 0, unsubscribed.stderr
    assert "no further issue will be sent to them" in unsubscribed.stdout
    assert run.poll() is None, "the send finished before the unsubscribe: make the relay slower"
    relay.delay = 0  # the unsubscribe is in: the rest of the run need not be slow
    out, err = run.communicate(timeout=120)

    assert run.returncode == 0, (out, err)
    no_traceback(out, err)
    assert leaving.lower() not in relay.by_recipient()
    assert len(relay.by_recipient()) == EVERYONE - 1
    assert ledger_states(project_dir) == {"sent": EVERYONE - 1, "suppressed": 5}
    assert "suppressed 5;" in out  # counted with the people suppressed before the run


def in_flight_and_unsent(project_dir: Path) -> tuple[int, int]:
    """Of the rows a killed run left `sending`: how many it had handed over, and how many not."""
    conn = sqlite3.connect(project_dir / "var" / "ledger.sqlite3")
    counts = dict(
        conn.execute(
            "SELECT handed_over, COUNT(*) FROM deliveries WHERE state = 'sending' "
            "GROUP BY handed_over"
        ).fetchall()
    )
    conn.close()
    return counts.get(1, 0), counts.get(0, 0)


@pytest.mark.parametrize("connections", [1, 2], ids=["one-thread", "two-sending-processes"])
def test_after_kill_9_only_messages_in_flight_are_reported_as_maybe_sent_twice(
    project_dir: Path, relay: SlowServer, connections: int
) -> None:
    use_connections(project_dir, connections)
    run = start(project_dir, relay, *SEND)
    wait_for_messages(relay, run, 15)
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL
    # Sending processes die with the main one: nothing more arrives once it is gone.
    arrived = len(relay.messages)
    time.sleep(10 * SlowServer.delay)
    assert len(relay.messages) == arrived
    in_flight, never_handed_over = in_flight_and_unsent(project_dir)
    # Claimed ahead of the connections: most rows left `sending` never reached a transport.
    assert never_handed_over > 0
    received_before = Counter(to.lower() for m in relay.messages for to in m.rcpt_tos)

    relay.delay = 0
    rerun = finish(project_dir, relay, *SEND)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    no_traceback(rerun.stdout, rerun.stderr)
    if in_flight:
        assert f"{in_flight} message(s) were in flight" in rerun.stdout
    else:
        assert "in flight" not in rerun.stdout
    assert "interrupted by an earlier run" not in rerun.stdout
    received = relay.by_recipient()
    assert len(received) == EVERYONE
    twice = {a for a, copies in received.items() if len(copies) > 1}
    assert len(twice) <= in_flight  # only a message in flight can arrive twice
    assert all(received_before[a] for a in twice)
    assert ledger_states(project_dir) == {"sent": EVERYONE, "suppressed": 4}


def test_a_sending_process_that_dies_stops_the_run_and_the_rerun_repeats_only_its_message(
    project_dir: Path, relay: SlowServer
) -> None:
    """Killed by the kernel (out of memory, say): the run says so, and nothing is lost."""
    run = start(project_dir, relay, *SEND)
    wait_for_messages(relay, run, 15)
    children = sending_processes(run)
    assert len(children) == 2  # smtp.connections: 2, no rate limit: two sending processes
    os.kill(children[0], signal.SIGKILL)
    out, err = run.communicate(timeout=60)

    assert run.returncode == 1, (out, err)
    no_traceback(out, err)
    assert "a sending process stopped unexpectedly" in out + err
    in_flight, _ = in_flight_and_unsent(project_dir)
    assert in_flight <= 5  # at most the chunk it was sending

    relay.delay = 0
    rerun = finish(project_dir, relay, *SEND)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    received = relay.by_recipient()
    assert len(received) == EVERYONE
    assert len([a for a, copies in received.items() if len(copies) > 1]) <= in_flight
