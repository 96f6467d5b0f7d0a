"""One scrubber keeps every secret, in clear and in the base64 forms it travels in, out of text."""

from __future__ import annotations

import base64
import urllib.parse

from newsletter.core.scrub import SecretScrubber


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_secrets_and_their_base64_forms_are_masked() -> None:
    scrub = SecretScrubber(["hunter2", ""], credentials=["\0robot\0hunter2", "key:hunter2"])
    text = " ".join(
        ["hunter2", b64("hunter2"), b64("\0robot\0hunter2"), b64("key:hunter2"), "robot"]
    )
    assert scrub(text) == " ".join(["********"] * 4 + ["robot"])


def test_a_secret_containing_another_is_masked_whole() -> None:
    scrub = SecretScrubber(["abc", "xxabcxx"])
    assert scrub("see xxabcxx and abc") == "see ******** and ********"


def test_no_secrets_leaves_text_alone() -> None:
    assert SecretScrubber()("550 no such user") == "550 no such user"


def test_url_encoded_forms_are_masked_however_the_escapes_are_written() -> None:
    """A token endpoint may echo a form field: `~` kept or escaped, spaces as + or %20."""
    secret = "Qx8~a/b+c d"
    scrub = SecretScrubber([secret])
    echoed = [
        urllib.parse.quote_plus(secret),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret, safe="~"),
        urllib.parse.quote(secret, safe="").lower().replace("qx8", "Qx8"),
    ]
    for text in echoed:
        assert secret not in scrub(f"client_secret={text}&x=1")
        assert scrub(f"client_secret={text}&x=1") == "client_secret=********&x=1", text


def test_base64_forms_with_or_without_padding_and_url_safe_are_masked() -> None:
    secret = "key?>~~"  # encodes to characters that differ between the two alphabets
    standard = base64.b64encode(secret.encode()).decode()
    url_safe = base64.urlsafe_b64encode(secret.encode()).decode()
    assert standard != url_safe
    scrub = SecretScrubber([secret])
    for form in (standard, url_safe, url_safe.rstrip("=")):
        assert scrub(f"echo {form} end") == "echo ******** end"


def test_scrubbing_twice_changes_nothing() -> None:
    scrub = SecretScrubber(["alpha-secret", "beta-secret"])
    once = scrub("alpha-secret beta-secret")
    assert once == "******** ********" and scrub(once) == once
