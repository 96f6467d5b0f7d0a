"""Local stand-ins for Microsoft 365: the identity platform, Graph sendMail and XOAUTH2 SMTP.

Fixtures (all on 127.0.0.1, HTTPS with the session's throwaway CA, which
`identity.trust(monkeypatch)` tells clients to trust through SSL_CERT_FILE):
- `ms_clock`: a `FakeClock` the fakes and the code under test share, so a
  token can expire in the middle of a send without anyone sleeping.
- `identity`: a `FakeIdentityPlatform` for tenant `TENANT_ID` and app
  `CLIENT_ID`. It serves the OpenID configuration MSAL reads
  (`/{tenant}/v2.0/.well-known/openid-configuration`) and the token endpoint
  (`POST /{tenant}/oauth2/v2.0/token`), checking the client-credentials
  request: form encoding, grant type, client id, a `/.default` scope, and the
  client secret or a certificate-signed `client_assertion` (verified with the
  registered certificate's public key). It issues opaque tokens that expire
  `expires_in` seconds later on `ms_clock`, and refuses as Entra ID does
  (`invalid_client` AADSTS7000215, `unauthorized_client` AADSTS700016,
  400 for an unknown tenant). `identity.valid(token, scope)` is how the other
  fakes check a bearer token. `identity.identity()` gives the
  `MicrosoftIdentity` for the code under test; `identity.configure(monkeypatch)`
  sets NEWSLETTER_OAUTH_*.
- `graph`: a `FakeGraph` serving `POST /v1.0/users/{sender}/sendMail` as
  Graph documents the MIME send: `Content-Type: text/plain`, a body that is
  the base64 of an RFC 5322 message, a bearer token for the Graph scope.
  It decodes and parses the message and checks that From is the sender and
  that our Message-ID and List-Unsubscribe are there. 202 accepts; a bad or
  expired token gets 401 `InvalidAuthenticationToken`; `deny_mail_send()`
  makes it answer 403 `ErrorAccessDenied`; `respond(status, body, headers,
  times)` scripts 429/503 with Retry-After and the like (after the contract
  is checked). `graph.accepted` holds the parsed messages.
- `xoauth2_smtp`: an aiosmtpd server (the `SmtpTestServer` of
  tests/support/smtp.py) that, like smtp.office365.com:587, wants STARTTLS
  (the throwaway CA, trusted through SSL_CERT_FILE) and then AUTH, whose only
  mechanism is XOAUTH2: it decodes
  `user=<mailbox>\\x01auth=Bearer <token>\\x01\\x01`, checks the format, the
  mailbox and the token (valid for the Outlook scope, not expired on
  `ms_clock`), and answers as Exchange Online does: 235 or the 334 error
  challenge then `535 5.7.3 Authentication unsuccessful`. `.auths` lists the
  tokens it accepted, in order.

Secrets are test values; a fake never prints one. Requests that break a
contract are recorded in `.violations` and fail the test at teardown.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
import pytest
from aiosmtpd.smtp import SMTP, AuthResult

from newsletter.core.settings import Secret
from newsletter.transports.microsoft.identity import GRAPH_SCOPE, SMTP_SCOPE, MicrosoftIdentity
from tests.support.clock import FakeClock
from tests.support.scripted import Script
from tests.support.smtp import SmtpTestServer
from tests.support.tls import LocalHttpServer, Reply, Request, ThrowawayCA, serve

TENANT_ID = "6f2c7a4e-0b1d-4c55-9e21-5a0c1d2e3f40"
CLIENT_ID = "b5e1d8a2-93c4-4f0e-8a7b-2c1d0e9f8a76"
CLIENT_SECRET = "Qx8~test-client-secret.Zr5vLm2-kP9"
MAILBOX = "comms@example.org"  # the sample project's From address
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class IssuedToken:
    value: str
    scope: str
    expires_at: float


@dataclass
class _Scripted:
    status: int
    body: Any
    headers: dict[str, str]
    times: int


class FakeIdentityPlatform:
    """Entra ID's v2.0 endpoints for one tenant and one app registration."""

    name = "Microsoft identity platform"

    def __init__(self, ca: ThrowawayCA, clock: FakeClock) -> None:
        self.ca = ca
        self.clock = clock
        self.tenant_id = TENANT_ID
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET
        self.certificate_pem: bytes | None = None  # registered with the app, for assertions
        self.expires_in = 3599
        self.issued: list[IssuedToken] = []
        self.token_requests: list[dict[str, str]] = []
        self.violations: list[str] = []
        self._script: Script[_Scripted] = Script()
        self._lock = threading.Lock()
        self._server = LocalHttpServer(self._handle, tls=ca.server_context())

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        self._server.stop()

    # -- what tests use ------------------------------------------------------

    def identity(self, **changes: Any) -> MicrosoftIdentity:
        values: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": Secret(self.client_secret),
            "authority_host": self.url,
        }
        values.update(changes)
        return MicrosoftIdentity(**values)

    def trust(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make HTTPS clients (MSAL, requests) trust the throwaway CA, verification on."""
        # requests prefers these two over anything else; SSL_CERT_FILE is the one we set.
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", str(self.ca.ca_path))

    def configure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trust(monkeypatch)
        monkeypatch.setenv("NEWSLETTER_OAUTH_TENANT_ID", self.tenant_id)
        monkeypatch.setenv("NEWSLETTER_OAUTH_CLIENT_ID", self.client_id)
        monkeypatch.setenv("NEWSLETTER_OAUTH_CLIENT_SECRET", self.client_secret)
        monkeypatch.setenv("NEWSLETTER_OAUTH_AUTHORITY", self.url)

    def respond(
        self, status: int, body: Any, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` valid token requests with this instead of a token."""
        with self._lock:
            self._script.add(_Scripted(status, body, headers or {}, times))

    def valid(self, token: str, scope: str) -> bool:
        """Whether `token` was issued here for `scope` and has not expired on the clock."""
        now = self.clock.time()
        with self._lock:
            return any(
                t.value == token and t.scope == scope and now < t.expires_at for t in self.issued
            )

    def revoke_all(self) -> None:
        """Every token issued so far stops working (an admin revoked the app's sessions)."""
        with self._lock:
            for token in self.issued:
                token.expires_at = float("-inf")

    def tokens_for(self, scope: str) -> list[str]:
        with self._lock:
            return [t.value for t in self.issued if t.scope == scope]

    # -- the endpoints -------------------------------------------------------

    def _handle(self, request: Request) -> Reply:
        parts = request.path.strip("/").split("/")
        tenant = parts[0] if parts else ""
        if request.method == "GET" and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            if tenant != self.tenant_id:
                return self._error(
                    400,
                    "invalid_tenant",
                    f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have "
                    "the correct tenant ID and are signing into the correct cloud.",
                )
            base = f"{self.url}/{tenant}"
            return Reply(
                200,
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "issuer": f"{base}/v2.0",
                    "jwks_uri": f"{self.url}/{tenant}/discovery/v2.0/keys",
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                    "response_types_supported": ["code", "id_token", "code id_token"],
                    "tenant_region_scope": "EU",
                },
            )
        if request.method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
            return self._token(request, tenant)
        self._violation(f"{request.method} {request.path}: not an identity platform endpoint")
        return Reply(404, {"error": "not_found"})

    def _token(self, request: Request, tenant: str) -> Reply:
        if "application/x-www-form-urlencoded" not in request.header("Content-Type"):
            self._violation("the token request must be form encoded")
        form = request.form()
        with self._lock:
            self.token_requests.append({k: v for k, v in form.items() if k == "scope"})
        if tenant != self.tenant_id:
            return self._error(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            self._violation(f"grant_type must be client_credentials, not {form.get('grant_type')}")
            return self._error(400, "unsupported_grant_type", "AADSTS70003")
        scope = form.get("scope", "")
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            self._violation(f"client credentials need exactly one `/.default` scope, got {scope!r}")
            return self._error(400, "invalid_scope", "AADSTS1002012: The provided value for scope")
        if form.get("client_id") != self.client_id:
            return self._error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not "
                f"found in the directory '{tenant}'.",
            )
        if not self._client_authenticated(form, request):
            return self._error(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                "the request is the client secret value, not the client secret ID.",
            )
        scripted = self._script.next()
        if scripted is not None:
            return Reply(scripted.status, scripted.body, scripted.headers)
        token = f"eyJ0eXAiOiJKV1Qi.{secrets.token_urlsafe(48)}.{len(self.issued) + 1}"
        with self._lock:
            self.issued.append(IssuedToken(token, scopes[0], self.clock.time() + self.expires_in))
        return Reply(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "ext_expires_in": self.expires_in,
                "access_token": token,
            },
        )

    def _client_authenticated(self, form: dict[str, str], request: Request) -> bool:
        if "client_assertion" in form:
            if form.get("client_assertion_type") != JWT_BEARER:
                self._violation("client_assertion_type must be the jwt-bearer URN")
                return False
            return self._assertion_ok(form["client_assertion"], request)
        if "client_secret" not in form:
            self._violation("the token request carries neither a secret nor an assertion")
            return False
        return form["client_secret"] == self.client_secret

    def _assertion_ok(self, assertion: str, request: Request) -> bool:
        if self.certificate_pem is None:
            return False
        from cryptography import x509

        certificate = x509.load_pem_x509_certificate(self.certificate_pem)
        audience = f"{self.url}{request.path}"
        try:
            claims = jwt.decode(
                assertion,
                certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["PS256", "RS256"],
                audience=audience,
                options={"require": ["exp", "aud", "iss", "sub", "jti"]},
            )
        except jwt.PyJWTError as error:
            self._violation(f"the client assertion does not verify: {error}")
            return False
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            self._violation("the client assertion's iss and sub must be the client id")
            return False
        return True

    def _error(self, status: int, error: str, description: str) -> Reply:
        trace = uuid.uuid4()
        return Reply(
            status,
            {
                "error": error,
                "error_description": f"{description} Trace ID: {trace} Correlation ID: "
                f"{uuid.uuid4()} Timestamp: 2023-05-15 09:00:00Z",
                "error_codes": [int(description[6:].split(":")[0] or 0)]
                if description.startswith("AADSTS")
                else [],
                "trace_id": str(trace),
            },
        )

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)


class FakeGraph:
    """Microsoft Graph `user: sendMail` with MIME content, for one sender mailbox."""

    name = "Microsoft Graph"

    def __init__(self, ca: ThrowawayCA, identity: FakeIdentityPlatform, sender: str) -> None:
        self.identity = identity
        self.sender = sender
        self.accepted: list[EmailMessage] = []
        self.requests: list[Request] = []
        self.violations: list[str] = []
        self.rejected_tokens = 0
        self._mail_send = True
        self._late_seconds = 0.0
        self._script: Script[_Scripted] = Script()
        self._lock = threading.Lock()
        self._server = LocalHttpServer(self._handle, tls=ca.server_context())

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        self._server.stop()

    def deny_mail_send(self) -> None:
        """The app has no Mail.Send application permission (or no admin consent)."""
        self._mail_send = False

    def respond(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` valid, authorised requests with this."""
        with self._lock:
            self._script.add(_Scripted(status, body, headers or {}, times))

    def recipients(self) -> list[str]:
        with self._lock:
            return [parseaddr(str(m["To"]))[1] for m in self.accepted]

    def answer_late(self, seconds: float) -> None:
        """Accept each message, then wait `seconds` before answering (longer than the client waits)."""
        self._late_seconds = seconds

    def _handle(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
        prefix = "/v1.0/users/"
        if (
            request.method != "POST"
            or not request.path.startswith(prefix)
            or not request.path.endswith("/sendMail")
        ):
            self._violation(
                f"{request.method} {request.path}: sendMail is POST /users/{{id}}/sendMail"
            )
            return _graph_error(404, "ResourceNotFound", "Resource not found for the segment.")
        user = unquote(request.path[len(prefix) : -len("/sendMail")])
        authorization = request.header("Authorization")
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        if not token or not self.identity.valid(token, GRAPH_SCOPE):
            with self._lock:
                self.rejected_tokens += 1
            return _graph_error(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        if not self._mail_send:
            return _graph_error(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        if user.lower() != self.sender.lower():
            return _graph_error(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        if not request.header("Content-Type").startswith("text/plain"):
            self._violation("a MIME send must be Content-Type: text/plain")
            return _graph_error(400, "ErrorInvalidRequest", "Unsupported content type.")
        try:
            raw = base64.b64decode(request.body, validate=True)
        except (binascii.Error, ValueError):
            self._violation("the body is not base64")
            return _graph_error(
                400,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            )
        if len(request.body) > 4 * 1024 * 1024:
            self._violation("a sendMail request is limited to 4 MB")
            return _graph_error(413, "ErrorRequestEntityTooLarge", "The request is too large.")
        message = message_from_bytes(raw, policy=policy.default)
        problem = self._message_problem(message)
        if problem:
            self._violation(problem)
            return _graph_error(400, "ErrorMimeContentInvalid", problem)
        scripted = self._script.next()
        if scripted is not None:
            body = scripted.body
            if body is None and scripted.status >= 400:
                body = {"error": {"code": "ApplicationThrottled" if scripted.status == 429
                                  else "ServiceUnavailable", "message": f"HTTP {scripted.status}"}}  # fmt: skip
            if scripted.status == 202:
                self._accept(message)
            return Reply(scripted.status, body, scripted.headers)
        self._accept(message)
        if self._late_seconds:
            time.sleep(self._late_seconds)  # the message is taken; the answer is lost
        return Reply(202, None, {"request-id": str(uuid.uuid4())})

    def _message_problem(self, message: Any) -> str | None:
        if not isinstance(message, EmailMessage) or message.defects:
            return "the MIME content does not parse as one message"
        for header in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe"):
            if message.get(header) is None:
                return f"the message has no {header} header"
        if parseaddr(str(message["From"]))[1].lower() != self.sender.lower():
            return "From must be the mailbox the app sends as"
        if message.get_body(("plain",)) is None or message.get_body(("html",)) is None:
            return "the message must carry the text and HTML parts we built"
        return None

    def _accept(self, message: EmailMessage) -> None:
        with self._lock:
            self.accepted.append(message)

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)


def _graph_error(status: int, code: str, message: str) -> Reply:
    return Reply(
        status,
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {"request-id": str(uuid.uuid4()), "date": "2023-05-15T08:00:00"},
            }
        },
        {"request-id": str(uuid.uuid4())},
    )


# -- SMTP with XOAUTH2 ---------------------------------------------------------

XOAUTH2_FAILURE = json.dumps(
    {"status": "401", "schemes": "bearer", "scope": "https://outlook.office365.com/.default"}
)


@dataclass
class XOAuth2Checks:
    """What the XOAUTH2 server checks, and what it saw."""

    identity: FakeIdentityPlatform
    mailbox: str
    auths: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    refuse_every: bool = False  # e.g. the app is not allowed on this mailbox


class XOAuth2Server(SmtpTestServer):
    """aiosmtpd offering only AUTH XOAUTH2, checked as Exchange Online checks it."""

    def __init__(self, checks: XOAuth2Checks, ca: ThrowawayCA) -> None:
        self.checks = checks
        # Like smtp.office365.com:587: STARTTLS first, then AUTH, which is required.
        super().__init__(
            tls_context=ca.server_context(),
            require_starttls=True,
            auth_required=True,
            auth_exclude_mechanism=["LOGIN", "PLAIN"],
        )

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            blob = args[1]
        else:  # no initial response: ask for it with an empty challenge
            answer = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            blob = base64.b64encode(answer).decode()
        try:
            text = base64.b64decode(blob, validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            self.checks.violations.append("the XOAUTH2 response is not base64 of ASCII")
            return AuthResult(
                success=False, handled=False, message="501 5.5.2 Cannot decode response"
            )
        fields = text.split("\x01")
        well_formed = (
            len(fields) == 4
            and fields[2:] == ["", ""]
            and fields[0].startswith("user=")
            and fields[1].startswith("auth=Bearer ")
        )
        if not well_formed:
            self.checks.violations.append("XOAUTH2 must be user=<mailbox>^Aauth=Bearer <token>^A^A")
            return AuthResult(
                success=False, handled=False, message="501 5.5.2 Malformed XOAUTH2 response"
            )
        user = fields[0].removeprefix("user=")
        token = fields[1].removeprefix("auth=Bearer ")
        ok = (
            not self.checks.refuse_every
            and user.lower() == self.checks.mailbox.lower()
            and self.checks.identity.valid(token, SMTP_SCOPE)
        )
        if ok:
            self.checks.auths.append(token)
            return AuthResult(success=True)
        self.checks.refusals.append(token)
        # Exchange's XOAUTH2 failure: a 334 with a JSON error, then 535 after the empty reply.
        await server.challenge_auth(XOAUTH2_FAILURE)
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )


# -- fixtures ------------------------------------------------------------------


@pytest.fixture
def ms_clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def identity(local_ca: ThrowawayCA, ms_clock: FakeClock) -> Iterator[FakeIdentityPlatform]:
    """A local Microsoft identity platform over HTTPS; see the module docstring."""
    yield from serve(FakeIdentityPlatform(local_ca, ms_clock))


@pytest.fixture
def graph(local_ca: ThrowawayCA, identity: FakeIdentityPlatform) -> Iterator[FakeGraph]:
    """A local Graph sendMail (MIME) for MAILBOX over HTTPS; see the module docstring."""
    yield from serve(FakeGraph(local_ca, identity, MAILBOX))


@pytest.fixture
def xoauth2_smtp(local_ca: ThrowawayCA, identity: FakeIdentityPlatform) -> Iterator[XOAuth2Server]:
    """A STARTTLS SMTP server accepting only XOAUTH2 with tokens from `identity`, for MAILBOX."""
    server = XOAuth2Server(XOAuth2Checks(identity, MAILBOX), local_ca)
    try:
        yield server
    finally:
        server.stop()
    assert not server.checks.violations, f"XOAUTH2 contract broken: {server.checks.violations}"


def write_certificate(directory: Path) -> tuple[Path, bytes]:
    """An RSA key and self-signed certificate in one PEM file, as an app registration uses."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "newsletter app")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    path = directory / "newsletter-app.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert_pem
    )
    return path, cert_pem
