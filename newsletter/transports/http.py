"""What the HTTP API providers share: one requests Session, retries, batching and safe errors.

Retry rule (both providers): 429 and 5xx, and a connection that fails, are
retried a bounded number of times. The wait is what the provider asked for
(`Retry-After` in seconds or as an HTTP date, else a rate-limit reset
header), else exponential backoff; a wait longer than `max_wait` is not
slept here but handed back as `retry_after` on `failed-temporary` results, so the
dispatcher decides. 401/403 mean the key is wrong: `DeliveryError`, which
stops the run instead of failing everyone. Other 4xx are for the provider
module to map: only an answer about one recipient is `failed-permanent`;
an answer about the request, the message, the sender or the account stops
the run (`DeliveryError`) and suppresses nobody.

A POST whose body was sent and then got no answer (the read timed out, the
provider closed the connection) is `Lost`, never retried: the provider may
have accepted it, so its messages are `unknown`. Only a failure before the
request went out (no connection, TLS, a connect timeout) is retried.

Secrets travel only in request headers. Error text never includes request
headers, and `scrub` removes every secret (and its base64 form) from any
text we build from a response or exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from newsletter.core.errors import ConfigError, DeliveryError
from newsletter.core.ratelimit import backoff_delay
from newsletter.core.scrub import SecretScrubber
from newsletter.core.settings import Settings
from newsletter.render.message import envelope_address
from newsletter.transports.base import (
    DeliveryResult,
    OutgoingMessage,
    Route,
    SettingProblem,
    is_placeholder_host,
)
from newsletter.transports.halt import Halt, halted
from newsletter.transports.provider_settings import ProviderSettings

Sleep = Callable[[float], None]

# Headers a provider must carry through unchanged: one-click unsubscribe
# (RFC 2369, RFC 8058), the list identity and our deterministic Message-ID.
PASS_THROUGH_HEADERS = (
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "X-Newsletter-Issue",
)
# Reset headers seen on rate-limited APIs, used when Retry-After is absent.
RESET_HEADERS = ("RateLimit-Reset", "X-RateLimit-Reset", "X-RateLimit-Reset-After")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry 429/5xx before giving the batch back as temporary."""

    attempts: int = 4
    base_delay: float = 1.0
    max_wait: float = 60.0

    def backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.base_delay, self.max_wait)


@dataclass(frozen=True)
class Answer:
    """A final HTTP answer that is not 429, 5xx or 401/403."""

    status: int
    body: Any  # parsed JSON, or None when the body was not JSON
    text: str


@dataclass(frozen=True)
class GaveUp:
    """Retries ran out (or the provider asked for a longer wait than we sleep)."""

    detail: str
    retry_after: float | None


@dataclass(frozen=True)
class Lost:
    """The request went out and no answer came back: the provider may have accepted it."""

    detail: str


@dataclass(frozen=True)
class MessageParts:
    """The pieces of a built message that a JSON email API asks for."""

    from_name: str
    from_address: str
    to_name: str
    to_address: str
    reply_to: str | None
    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)


def message_parts(message: EmailMessage) -> MessageParts:
    """Take a message from `build_message` apart for an API: addresses, subject, bodies, headers."""
    sender = _first_address(message, "From")
    to = _first_address(message, "To")
    reply_to = message.get("Reply-To")
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    headers = {
        name: str(message[name]) for name in PASS_THROUGH_HEADERS if message.get(name) is not None
    }
    return MessageParts(
        from_name=sender[0],
        from_address=sender[1],
        to_name=to[0],
        to_address=to[1],
        reply_to=str(reply_to) if reply_to is not None else None,
        subject=str(message.get("Subject", "")),
        text=text_part.get_content() if isinstance(text_part, EmailMessage) else "",
        html=html_part.get_content() if isinstance(html_part, EmailMessage) else "",
        headers=headers,
    )


def _first_address(message: EmailMessage, name: str) -> tuple[str, str]:
    header = message.get(name)
    if isinstance(header, AddressHeader) and header.addresses:
        address = header.addresses[0]
        # The parser keeps a UTF-8 address (RFC 6532) as surrogate escapes; undo that.
        spec = address.addr_spec.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return address.display_name, spec
    return "", str(header or "")


def retry_after_seconds(
    headers: Mapping[str, str], now: datetime | None = None, reset_headers: Iterable[str] = ()
) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or a reset header; None if absent."""
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    for name in (*reset_headers, *RESET_HEADERS):
        raw = headers.get(name)
        if not raw:
            continue
        try:
            number = float(raw.strip())
        except ValueError:
            continue
        # Some APIs give seconds left, others the Unix time of the reset.
        if number > 1_000_000_000:
            number -= (now or datetime.now(UTC)).timestamp()
        return max(0.0, number)
    return None


class ApiClient:
    """POSTs JSON to one provider with retries; never lets a secret into an error."""

    def __init__(
        self,
        provider_name: str,
        base_url: str,
        *,
        headers: Mapping[str, str],
        auth: tuple[str, str] | None = None,
        secrets: Sequence[str] = (),
        retry: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
        timeout: float = 30.0,
        key_hint: str = "",
        reset_headers: Iterable[str] = (),
    ) -> None:
        self.provider_name = provider_name
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.timeout = timeout
        self.key_hint = key_hint
        self.reset_headers = tuple(reset_headers)
        credentials = [f"{auth[0]}:{auth[1]}"] if auth is not None else []
        self.scrub = SecretScrubber([*secrets, *(auth or ())], credentials=credentials)
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": "newsletter"})
        self.session.headers.update(headers)
        if auth is not None:
            self.session.auth = auth

    def post_json(self, path: str, payload: Any) -> Answer | GaveUp | Lost:
        """POST `payload`, retrying 429/5xx and failures to connect; raise DeliveryError on 401/403.

        `Lost` when the request went out and no answer came: never retried.
        """
        return self._request("POST", path, json=payload)

    def get_json(self, path: str, params: Mapping[str, str | int]) -> Answer | GaveUp:
        """GET with query `params`, with the same retries and errors as `post_json`."""
        answer = self._request("GET", path, params=dict(params))
        if isinstance(answer, Lost):  # only a POST can be lost; a GET is simply retried
            raise AssertionError("unreachable")  # pragma: no cover
        return answer

    def _request(self, method: str, path: str, **arguments: Any) -> Answer | GaveUp | Lost:
        url = f"{self.base_url}{path}"
        detail = ""
        wait: float | None = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = self.session.request(method, url, timeout=self.timeout, **arguments)
            except requests.RequestException as error:
                if method == "POST" and may_have_arrived(error):
                    return Lost(
                        self.scrub(
                            f"{self.provider_name} was sent the request, then "
                            f"{_what_happened(error, self.timeout)}; the messages may have "
                            "been accepted, so they are not sent again unless asked"
                        )
                    )
                detail = self.scrub(
                    f"{self.provider_name} could not be reached ({type(error).__name__})"
                )
                wait = self.retry.backoff(attempt)
            else:
                status = response.status_code
                if status in (401, 403):
                    raise DeliveryError(
                        self.scrub(
                            f"{self.provider_name} refused our credentials (HTTP {status}: "
                            f"{_short(response.text)}); check {self.key_hint}"
                        )
                    )
                if status != 429 and status < 500:
                    return Answer(status, _json(response), self.scrub(_short(response.text)))
                asked = retry_after_seconds(response.headers, reset_headers=self.reset_headers)
                wait = asked if asked is not None else self.retry.backoff(attempt)
                detail = self.scrub(
                    f"{self.provider_name} answered HTTP {status} ({_short(response.text)})"
                )
            if attempt == self.retry.attempts or wait > self.retry.max_wait:
                break
            self.sleep(wait)
        return GaveUp(detail, wait)

    def check_reachable(self, where_to_set: str) -> None:
        """One request without retries, to learn that the API answers at all (any status will do).

        A HEAD of the base URL, through any proxy the environment sets, as the
        real requests will go. ConfigError naming `where_to_set` if the name does
        not resolve, the connection is refused or TLS cannot be set up.
        """
        host = urlsplit(self.base_url).hostname
        if is_placeholder_host(host):
            raise ConfigError(
                f"the {self.provider_name} address {self.base_url} is a placeholder; "
                f"set {where_to_set}"
            )
        try:
            self.session.head(self.base_url + "/", timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as error:
            raise ConfigError(
                self.scrub(
                    f"cannot reach {self.provider_name} at {self.base_url} "
                    f"({type(error).__name__}); check the network, or set {where_to_set}"
                )
            ) from None

    def close(self) -> None:
        self.session.close()


class BatchApiTransport:
    """A provider's batch endpoint: splits into batches and stops the run on a fatal error.

    A subclass sets `name`, the environment variables its keys come from
    (`key_envs`: the key, then the secret key if it has one) and its address
    (`url_env`), takes its provider settings in `__init__` and implements
    `_send_chunk` for one batch of at most `batch_size` messages, posting it
    through `_client`.
    """

    name: str
    key_envs: tuple[str, ...]
    url_env: str
    sends_batch_in_one_request = True

    def __init__(self, provider: ProviderSettings, max_batch: int, client: ApiClient) -> None:
        self.batch_size = max(1, min(int(provider.options.get("batch_size", max_batch)), max_batch))
        self._client = client
        self._halt = Halt()

    @staticmethod
    def default_concurrency(settings: Settings) -> int:
        return 1

    @classmethod
    def describe(cls, settings: Settings) -> str:
        provider = ProviderSettings.of(settings, cls.name)
        key = "an API key from the environment" if provider.api_key else "NO API key set"
        return f"{cls.name}: {provider.base_url}, {key}"

    @classmethod
    def missing_keys(cls, provider: ProviderSettings) -> list[str]:
        """The variables of `key_envs` that are not set."""
        keys = (provider.api_key, provider.api_secret)
        return [env for env, key in zip(cls.key_envs, keys, strict=False) if not key]

    @classmethod
    def route(cls, settings: Settings) -> Route:
        provider = ProviderSettings.of(settings, cls.name)
        return Route(
            f"the {cls.name.capitalize()} API at {provider.base_url}",
            tuple(cls.missing_keys(provider)),
        )

    @classmethod
    def setup_problems(cls, settings: Settings) -> list[SettingProblem]:
        """A missing API key or a placeholder address: what `validate` and the dry run warn about."""
        provider = ProviderSettings.of(settings, cls.name)
        problems = []
        missing = cls.missing_keys(provider)
        if missing:
            problems.append(
                SettingProblem(
                    "transport",
                    f"the {cls.name} transport has no API key: set {' and '.join(missing)} "
                    "in the environment",
                )
            )
        if is_placeholder_host(urlsplit(provider.base_url).hostname):
            problems.append(
                SettingProblem(
                    f"providers.{cls.name}",
                    f"the {cls.name} address {provider.base_url} is a placeholder; "
                    f"set {cls.url_env} or remove it to use the real API",
                )
            )
        return problems

    def connect(self) -> None:
        """Check that the API answers before anyone is claimed (see `ApiClient.check_reachable`)."""
        self._client.check_reachable(self.url_env)

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """Send in batches of `batch_size`; one result per message, in order."""
        self._halt.check()
        results: list[DeliveryResult] = []
        for chunk in chunks(messages, self.batch_size):
            try:
                self._halt.check()  # a chunk that stopped the run leaves its error here
                results += self._send_chunk(chunk)
            except DeliveryError as error:
                return self._halt.stop(error, results, messages[len(results) :])
        return results

    def close(self) -> None:
        self._client.close()

    def _send_chunk(self, chunk: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        raise NotImplementedError

    def _judged(
        self, chunk: Sequence[OutgoingMessage], verdicts: Sequence[DeliveryResult | DeliveryError]
    ) -> list[DeliveryResult]:
        """Each message's result from the provider's answer about it, in order.

        A verdict that is a `DeliveryError` (a refusal about the sender, the
        account or the message, not the recipient) halts that message and
        stops the run: at once when nothing in the batch was handed over,
        else after the messages the provider did take are recorded.
        """
        results: list[DeliveryResult] = []
        stop: DeliveryError | None = None
        for outgoing, verdict in zip(chunk, verdicts, strict=True):
            if isinstance(verdict, DeliveryError):
                stop = stop or verdict
                results += halted([outgoing], str(stop))
            else:
                results.append(verdict)
        if stop is not None:
            if not any(r.status in ("sent", "failed-permanent") for r in results):
                raise stop
            self._halt.remember(stop)
        return results


def item_of(answers: Sequence[Any], index: int) -> dict[str, Any] | None:
    """The provider's answer about the message at `index`, when there is one."""
    item = answers[index] if index < len(answers) else None
    return item if isinstance(item, dict) else None


def to_name_for(parts: MessageParts, recipient: str) -> str:
    """The To display name, only when the envelope recipient is the To address."""
    same = envelope_address(parts.to_address).lower() == envelope_address(recipient).lower()
    return parts.to_name if same else ""


def temporary_for_all(messages: Sequence[OutgoingMessage], gave_up: GaveUp) -> list[DeliveryResult]:
    """Every message back as temporary, carrying the provider's requested wait."""
    return [
        DeliveryResult(
            m.recipient, m.message_id, "failed-temporary", gave_up.detail, None, gave_up.retry_after
        )
        for m in messages
    ]


def unknown_for_all(messages: Sequence[OutgoingMessage], lost: Lost) -> list[DeliveryResult]:
    """Every message of a request that got no answer: `unknown`, never resent silently."""
    return [DeliveryResult(m.recipient, m.message_id, "unknown", lost.detail) for m in messages]


def chunks(messages: Sequence[OutgoingMessage], size: int) -> list[Sequence[OutgoingMessage]]:
    """Split into the provider's batch size."""
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def may_have_arrived(error: requests.RequestException) -> bool:
    """True when the request had gone out before it failed (no answer), so it may have arrived.

    For any transport posting a message over `requests`: such a failure must
    be `unknown`, never retried.

    A read timeout, or a connection closed or reset while waiting for the
    answer (urllib3's ProtocolError, e.g. RemoteDisconnected), comes after
    sending; a refused connection, a connect timeout or a TLS failure before.
    """
    if isinstance(error, requests.ReadTimeout):
        return True
    if isinstance(error, requests.ConnectTimeout | requests.exceptions.SSLError):
        return False
    reason = error.args[0] if error.args else None
    return isinstance(error, requests.ConnectionError) and isinstance(
        reason, urllib3.exceptions.ProtocolError
    )


def _what_happened(error: requests.RequestException, timeout: float) -> str:
    if isinstance(error, requests.ReadTimeout):
        return f"gave no answer within {timeout:g} s"
    return "closed the connection without answering"


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
