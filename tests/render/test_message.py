"""The message each practitioner receives: headers, parts, DKIM, and no header injection."""

from __future__ import annotations

import base64
import dataclasses
import email
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.audience.lists import Recipient
from newsletter.content.issue import Issue
from newsletter.core.errors import HeaderInjectionError
from newsletter.core.project import Project, open_project
from newsletter.core.settings import DkimSettings, Secret, Settings
from newsletter.render.message import (
    MessageBuilder,
    PersonalisedEmail,
    build_message,
    message_bytes,
    message_id_for,
)
from tests.support.project import enable_one_click

JO = Recipient("jo.bloggs@example.org", "Zoë O'Neill-Ünal, Named Nurse")
EMAIL = PersonalisedEmail(
    "Panel reports: what they mean for us – May 2023", "<p>Hello</p>", "Hello"
)


@pytest.fixture
def issue(project: Project) -> Issue:
    return project.load_issue("2023-05-panel-reports")


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def test_multipart_alternative_with_text_first_then_html(project: Project, issue: Issue) -> None:
    parsed = parse(message_bytes(build_message(project.settings, issue, JO, EMAIL)))
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().strip() == "Hello"
    assert parts[1].get_content().strip() == "<p>Hello</p>"


def test_headers_encode_names_and_subject(project: Project, issue: Issue) -> None:
    raw = message_bytes(build_message(project.settings, issue, JO, EMAIL))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii(), "non-ASCII must be RFC 2047 encoded in headers"
    parsed = parse(raw)
    assert parsed["To"].addresses[0].display_name == JO.name
    assert parsed["To"].addresses[0].addr_spec == JO.email
    assert str(parsed["Subject"]) == EMAIL.subject
    assert parsed["From"].addresses[0].addr_spec == project.settings.from_address
    assert parsed["Reply-To"] == issue.reply_to
    assert "news-update.childrens-mars.example.org" in parsed["List-Id"]
    assert parsed["Date"]


@pytest.mark.usefixtures("one_click")
def test_list_unsubscribe_has_mailto_and_one_click_https(project: Project, issue: Issue) -> None:
    parsed = parse(message_bytes(build_message(project.settings, issue, JO, EMAIL)))
    value = parsed["List-Unsubscribe"]
    targets = [t.strip().strip("<>") for t in value.split(",")]
    assert targets[0].startswith("mailto:unsubscribe@example.org?subject=")
    assert targets[1].startswith("https://news.example.org/unsubscribe?")
    assert "jo.bloggs%40example.org" in targets[1]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_no_one_click_header_without_an_https_url(project: Project, issue: Issue) -> None:
    settings = dataclasses.replace(project.settings, unsubscribe_url=None)
    parsed = parse(message_bytes(build_message(settings, issue, JO, EMAIL)))
    assert parsed["List-Unsubscribe"].startswith("<mailto:")
    assert "https:" not in parsed["List-Unsubscribe"]
    assert parsed["List-Unsubscribe-Post"] is None


def test_message_id_is_deterministic_per_issue_and_recipient(
    project: Project, issue: Issue
) -> None:
    first = build_message(project.settings, issue, JO, EMAIL)["Message-ID"]
    retry = build_message(project.settings, issue, JO, EMAIL)["Message-ID"]
    assert (
        first
        == retry
        == message_id_for(
            issue.id, "JO.Bloggs@Example.org", "example.org", project.settings.unsubscribe_secret
        )
    )
    other = build_message(
        project.settings, issue, dataclasses.replace(JO, email="sam@example.org"), EMAIL
    )["Message-ID"]
    assert other != first
    assert message_id_for("2023-08-news", JO.email, "example.org", None) != first


def test_test_copy_is_marked_and_has_its_own_message_id(project: Project, issue: Issue) -> None:
    real = build_message(project.settings, issue, JO, EMAIL)
    test = build_message(project.settings, issue, JO, EMAIL, test=True)
    assert str(test["Subject"]).startswith("[TEST] ")
    assert test["Message-ID"] != real["Message-ID"]


@pytest.mark.parametrize(
    ("field", "change"),
    [
        (
            "recipient name",
            lambda r, e, s: (dataclasses.replace(r, name="Jo\r\nBcc: x@example.com"), e, s),
        ),
        (
            "subject",
            lambda r, e, s: (r, dataclasses.replace(e, subject="Hi\nBcc: x@example.com"), s),
        ),
        (
            "organisation",
            lambda r, e, s: (r, e, dataclasses.replace(s, organisation="MARS\r\nX-Evil: 1")),
        ),
        (
            "sender name",
            lambda r, e, s: (r, e, dataclasses.replace(s, from_name="MARS\nBcc: x@example.com")),
        ),
    ],
)
def test_line_breaks_in_header_values_are_refused(
    project: Project, issue: Issue, field: str, change: object
) -> None:
    recipient, personalised, settings = change(JO, EMAIL, project.settings)  # type: ignore[operator]
    with pytest.raises(HeaderInjectionError, match=field):
        build_message(settings, issue, recipient, personalised)


def test_no_line_exceeds_998_octets_even_for_one_line_html(project: Project, issue: Issue) -> None:
    huge = PersonalisedEmail("Subject", "<p>" + "word " * 20000 + "</p>", "x" * 5000)
    raw = message_bytes(build_message(project.settings, issue, JO, huge))
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = parse(raw)
    html = list(parsed.iter_parts())[1].get_content()
    assert html.count("word") == 20000


def _dkim_settings(settings: Settings) -> tuple[Settings, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return dataclasses.replace(
        settings, dkim=DkimSettings("example.org", "news", Secret(pem))
    ), record


@pytest.mark.usefixtures("one_click")
def test_dkim_signature_verifies_and_covers_one_click_headers(
    project: Project, issue: Issue
) -> None:
    settings, record = _dkim_settings(project.settings)
    raw = message_bytes(build_message(settings, issue, JO, EMAIL))

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news._domainkey.example.org."
        return record

    assert dkim.verify(raw, dnsfunc=dns)
    signature = parse(raw)["DKIM-Signature"]
    signed = {h.strip().lower() for h in signature.split("h=")[1].split(";")[0].split(":")}
    assert {
        "from",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    } <= signed

    # Changing a signed header (here the one-click marker) breaks the signature.
    tampered = raw.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=One-Clack")
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_dkim_key_never_appears_in_the_message(project: Project, issue: Issue) -> None:
    settings, _ = _dkim_settings(project.settings)
    assert settings.dkim is not None
    key_body = settings.dkim.private_key.reveal().splitlines()[1]
    raw = message_bytes(build_message(settings, issue, JO, EMAIL))
    assert key_body.encode() not in raw
    assert key_body not in repr(settings)


def test_message_round_trips_through_a_file(tmp_path: Path, project: Project, issue: Issue) -> None:
    path = tmp_path / "sample.eml"
    path.write_bytes(message_bytes(build_message(project.settings, issue, JO, EMAIL)))
    parsed = parse(path.read_bytes())
    assert parsed["Message-ID"].startswith("<2023-05-panel-reports.")


TRICKY_VALUES = [
    "",
    "Dear Zoë Ünal-O'Neill,",
    "a=b=c==",
    "trailing space ",
    "tab\tinside\t",
    "x" * 200,
    "é" * 60,
    "line one\nline two\n",
    "https://news.example.org/unsubscribe?address=jo%40example.org&issue=2023-05-panel-reports",
]


@pytest.mark.parametrize("value", TRICKY_VALUES)
@pytest.mark.parametrize("shared_line_length", [0, 40, 74, 75, 76, 77, 150])
def test_bodies_built_from_shared_and_personal_pieces_decode_exactly(
    project: Project, issue: Issue, value: str, shared_line_length: int
) -> None:
    # Shared pieces whose last line is close to the 76-octet limit, with a
    # personal value between them, must decode to exactly the joined text.
    shared = "<p>" + "s" * shared_line_length
    pieces = (shared, value, "=tail é " + "t" * shared_line_length, value, "\nend")
    text_pieces = (shared + "\n", value, " done")
    email = PersonalisedEmail("Subject", "".join(pieces), "".join(text_pieces), pieces, text_pieces)
    builder = MessageBuilder(project.settings, issue)
    for _ in range(2):  # the second build uses the cached shared pieces
        raw = builder.build(JO, email)
        body = raw.split(b"\r\n\r\n", 1)[1]
        assert max(len(line) for line in body.split(b"\r\n")) <= 76
        text_part, html_part = parse(raw).iter_parts()
        # Text travels with CRLF line breaks (RFC 2046's canonical form).
        assert html_part.get_content().replace("\r\n", "\n") == email.html
        assert text_part.get_content().replace("\r\n", "\n") == email.text


def test_builder_and_single_message_agree(project: Project, issue: Issue) -> None:
    builder = MessageBuilder(project.settings, issue)
    via_builder = parse(builder.build(JO, EMAIL))
    single = build_message(project.settings, issue, JO, EMAIL)
    for name in ("From", "To", "Subject", "Message-ID", "Reply-To", "List-Id", "List-Unsubscribe"):
        assert str(via_builder[name]) == str(single[name]), name


def test_no_one_click_header_when_the_url_has_no_secret_to_sign_it(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `newsletter serve` refuses unsigned links, so an unsigned one is never promised.
    enable_one_click(project_dir, monkeypatch)
    monkeypatch.delenv("NEWSLETTER_UNSUBSCRIBE_SECRET")
    project = open_project(project_dir)
    issue = project.load_issue("2023-05-panel-reports")
    parsed = parse(message_bytes(build_message(project.settings, issue, JO, EMAIL)))
    assert parsed["List-Unsubscribe"].startswith("<mailto:")
    assert "https:" not in parsed["List-Unsubscribe"]
    assert parsed["List-Unsubscribe-Post"] is None


@pytest.mark.parametrize("offset", range(0, 80, 3))
def test_no_line_starts_with_a_dot_and_the_dots_decode_back(
    project: Project, issue: Issue, offset: int
) -> None:
    """SMTP would strip a line-leading dot unless stuffed; the builder never makes one.

    Quoted-printable wraps at 76 octets wherever they fall, so a web address
    or a sentence can wrap just before a "."; every offset is tried, with
    dots alone, in runs, after escapes and at the very start.
    """
    text = "." + "x" * offset + "".join(f".org=é{'.' * n} ." for n in range(1, 40)) + "\n.\n..\n"
    pieces = (text, "person@example.org", "." * 80)
    email = PersonalisedEmail("Subject", "".join(pieces), "".join(pieces), pieces, pieces)
    builder = MessageBuilder(project.settings, issue)
    for _ in range(2):  # the second build uses the cached shared pieces
        raw = builder.build(JO, email)
        lines = raw.split(b"\r\n")
        assert not [line for line in lines if line.startswith(b".")]
        assert max(len(line) for line in raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")) <= 76
        text_part, html_part = parse(raw).iter_parts()
        assert text_part.get_content().replace("\r\n", "\n") == email.text
        assert html_part.get_content().replace("\r\n", "\n") == email.html


def test_one_builder_redated_keeps_its_bodies_and_changes_only_the_date(
    project: Project, issue: Issue
) -> None:
    builder = MessageBuilder(project.settings, issue)
    first = parse(builder.build(JO, EMAIL))
    builder.redate(datetime(2023, 5, 16, 9, 30, tzinfo=UTC))
    second = parse(builder.build(JO, EMAIL))

    assert second["Date"] == "Tue, 16 May 2023 09:30:00 +0000"
    assert first["Date"] != second["Date"]
    assert first.get_body(("plain",)).get_content() == second.get_body(("plain",)).get_content()
