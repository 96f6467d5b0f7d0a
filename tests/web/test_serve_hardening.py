"""`newsletter serve` facing the internet: idle connections, a locked ledger, hostile bodies, the team's file.

Every test drives the real command in its own process (tests/support/serve.py),
which fails the test if it printed a traceback.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.ledger.list_events import read_list_events
from tests.support.serve import WEBHOOK_USERS, ServeProcess

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
LEAVER = "jo.bloggs@example.org"


@contextmanager
def idle_connections(server: ServeProcess, count: int) -> Iterator[list[socket.socket]]:
    """`count` TCP connections that connect and then say nothing, as a scanner leaves them."""
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    with ExitStack() as stack:
        opened = [
            stack.enter_context(closing(socket.create_connection((host, int(port)), timeout=5)))
            for _ in range(count)
        ]
        yield opened


def test_healthz_answers_with_more_idle_connections_than_waitress_allows_by_default(
    serve_server: ServeProcess,
) -> None:
    with idle_connections(serve_server, 150):
        answer = serve_server.session().get(f"{serve_server.base_url}/healthz", timeout=10)
    assert answer.status_code == 200
    assert answer.text == "ok\n"


def test_with_the_ledger_locked_an_unsubscribe_that_was_written_says_so(
    impatient_serve_server: ServeProcess,
) -> None:
    # The lock is held until the answer comes, so the ledger's write really
    # times out; the server waits 1 s for it instead of 30 (tests/support/serve.py).
    serve_server = impatient_serve_server
    release = threading.Event()
    locked = threading.Event()

    def hold_write_lock() -> None:
        with closing(sqlite3.connect(serve_server.ledger_path, isolation_level=None)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(60)
            conn.execute("ROLLBACK")

    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    try:
        assert locked.wait(10)
        answer = serve_server.session().post(serve_server.link(LEAVER), data=ONE_CLICK, timeout=90)
    finally:
        release.set()
        holder.join()

    assert answer.status_code == 200
    assert "nothing was changed" not in answer.text
    assert "unsubscribed" in answer.text.lower()
    assert LEAVER in serve_server.suppressed_path.read_text(encoding="utf-8")
    # The ledger's write really waited out the lock and gave up: no event for the leaver.
    assert read_list_events(serve_server.ledger_path) == []


def webhook(server: ServeProcess, provider: str, body: bytes | object) -> int:
    client = server.session()
    url = f"{server.base_url}/webhooks/{provider}"
    auth = WEBHOOK_USERS[provider]
    if isinstance(body, bytes):
        headers = {"Content-Type": "application/json"}
        return client.post(url, data=body, headers=headers, auth=auth, timeout=30).status_code
    return client.post(url, json=body, auth=auth, timeout=30).status_code


def test_over_deep_json_is_a_bad_request_and_changes_nothing(serve_server: ServeProcess) -> None:
    before = serve_server.suppressed_path.read_bytes()
    assert webhook(serve_server, "mailjet", b"[" * 100_000 + b"]" * 100_000) == 400
    assert webhook(serve_server, "mailjet", b"[" * 40 + b"]" * 40) == 400
    assert webhook(serve_server, "postmark", b"{" * 50_000) == 400
    assert serve_server.suppressed_path.read_bytes() == before
    assert "RecursionError" not in "".join(serve_server.output)


def test_addresses_a_provider_sends_are_validated_and_never_logged(
    serve_server: ServeProcess,
) -> None:
    events = [
        {"event": "bounce", "hard_bounce": True, "email": address}
        for address in ("not an address", '=HYPERLINK("x")', "nul\0@example.org", "foo@bar..com")
    ]
    events.append({"event": "spam", "email": "real.person@example.org"})

    assert webhook(serve_server, "mailjet", events) == 200

    text = serve_server.suppressed_path.read_text(encoding="utf-8")
    assert "real.person@example.org" in text
    for bad in ("not an address", "HYPERLINK", "nul", "bar..com"):
        assert bad not in text
    validate = CliRunner().invoke(cli, ["--root", str(serve_server.project_dir), "validate"])
    assert "suppressed.csv" not in validate.output, validate.output
    log = "".join(serve_server.output)
    assert "real.person" not in log and "HYPERLINK" not in log and "not an address" not in log


EXCEL_FILE = "\ufeffEmail;Date;Reason\r\ne.walsh@example.com;2023-01-04;hard-bounce\r\n"


def test_a_suppressed_csv_saved_by_excel_takes_a_one_click_in_its_own_dialect(
    serve_server: ServeProcess,
) -> None:
    serve_server.suppressed_path.write_bytes(EXCEL_FILE.encode("utf-8"))

    answer = serve_server.session().post(serve_server.link(LEAVER), data=ONE_CLICK, timeout=30)

    assert answer.status_code == 200, answer.text
    raw = serve_server.suppressed_path.read_bytes().decode("utf-8")
    assert raw.startswith(EXCEL_FILE)  # every byte the team wrote is kept
    assert raw[len(EXCEL_FILE) :].startswith(f"{LEAVER};")
    assert raw.endswith("one-click\r\n")


def test_a_malformed_hand_edit_is_never_rewritten_but_the_person_still_leaves(
    serve_server: ServeProcess,
) -> None:
    link = serve_server.link(LEAVER)  # as the message carried it, before the edit
    broken = "email,date,reason\nsam@example.org,2023-01-04,manual,extra,cells\n"
    serve_server.suppressed_path.write_text(broken, encoding="utf-8")

    answer = serve_server.session().post(link, data=ONE_CLICK, timeout=30)

    assert answer.status_code == 200
    assert serve_server.suppressed_path.read_text(encoding="utf-8") == broken
    [event] = read_list_events(serve_server.ledger_path)
    assert (event.address, event.action, event.changed) == (LEAVER, "suppressed", False)
    validate = CliRunner().invoke(cli, ["--root", str(serve_server.project_dir), "validate"])
    assert "suppressed.csv:2:1: row 2 has 5 values" in validate.output  # named, for a person
    assert "Traceback" not in validate.output


def test_a_symlinked_list_is_written_through_to_the_shared_file(
    serve_server: ServeProcess,
) -> None:
    # Kept in another folder of the project (a link from outside is refused by `send`).
    shared = serve_server.project_dir / "shared" / "suppressed.csv"
    shared.parent.mkdir()
    shared.write_bytes(serve_server.suppressed_path.read_bytes())
    serve_server.suppressed_path.unlink()
    serve_server.suppressed_path.symlink_to(shared)

    answer = serve_server.session().post(serve_server.link(LEAVER), data=ONE_CLICK, timeout=30)

    assert answer.status_code == 200
    assert serve_server.suppressed_path.is_symlink()
    assert LEAVER in shared.read_text(encoding="utf-8")
    assert (shared.parent / "suppressed.csv.lock").exists()
    assert not (serve_server.suppressed_path.parent / "suppressed.csv.lock").exists()
    validate = CliRunner().invoke(cli, ["--root", str(serve_server.project_dir), "validate"])
    assert validate.exit_code == 0, validate.output


def test_a_hand_edit_that_drops_a_row_does_not_undo_a_one_click(
    serve_server: ServeProcess,
) -> None:
    project = str(serve_server.project_dir)
    stale = serve_server.suppressed_path.read_bytes()  # open in an editor...
    serve_server.session().post(serve_server.link(LEAVER), data=ONE_CLICK, timeout=30)
    assert LEAVER in serve_server.suppressed_path.read_text(encoding="utf-8")
    serve_server.suppressed_path.write_bytes(stale)  # ...and saved over the one-click

    validate = CliRunner().invoke(cli, ["--root", project, "validate"])
    assert f"{LEAVER} left the list" in validate.output
    assert f"newsletter resubscribe {LEAVER}" in validate.output
    preview = CliRunner().invoke(cli, ["--root", project, "audience", "--format", "json"])
    assert LEAVER not in preview.output

    # Only an explicit resubscribe brings them back.
    again = CliRunner().invoke(cli, ["--root", project, "resubscribe", LEAVER])
    assert again.exit_code == 0, again.output
    assert (
        f"{LEAVER} left the list"
        not in CliRunner().invoke(cli, ["--root", project, "validate"]).output
    )
