"""One scrubber keeps every secret, in clear and in the base64 forms it travels in, out of text."""

from __future__ import annotations

import base64

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
