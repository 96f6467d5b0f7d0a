"""App-only OAuth2 access tokens from the Microsoft identity platform, shared by SMTP and Graph.

The contract relied on (Microsoft identity platform, "OAuth 2.0 client
credentials flow", learn.microsoft.com/entra/identity-platform/
v2-oauth2-client-creds-grant-flow; MSAL for Python's
`ConfidentialClientApplication`, msal-python.readthedocs.io):
- The authority is `{authority_host}/{tenant}`; MSAL reads
  `{authority}/v2.0/.well-known/openid-configuration` for the token
  endpoint, then POSTs `grant_type=client_credentials`, `client_id`,
  `scope` and either `client_secret` or a signed `client_assertion` (a
  certificate) to `{authority}/oauth2/v2.0/token`. HTTPS only.
- Scopes are a resource's `/.default`: `https://outlook.office365.com/.default`
  for SMTP (XOAUTH2, application permission SMTP.SendAsApp) and
  `https://graph.microsoft.com/.default` for Graph (Mail.Send).
- A success is `{token_type: Bearer, expires_in, access_token}`; a refusal is
  `{error, error_description: "AADSTS<code>: ..."}`: `invalid_client`
  (wrong or expired secret or certificate), `unauthorized_client` (no such
  application in this tenant), `invalid_scope`, `invalid_request` (e.g. the
  tenant does not exist).
- An authority host other than Microsoft's public cloud (a sovereign cloud,
  or a local test server) is used as given: instance discovery, which would
  ask login.microsoftonline.com about it, is turned off as MSAL documents.

The app registration comes from the `oauth` block of the settings
(NEWSLETTER_OAUTH_*, declared in `transports.microsoft.settings` and read
like every other secret); `MicrosoftIdentity.from_settings` says which
variables are missing.

Our rules: one `TokenProvider` per scope per run, shared by every worker;
a token is reused until `refresh_margin` seconds before it expires on the
injected clock, so a long rate-limited send refreshes in the middle of the
run instead of failing. A refusal no retry can fix raises `TokenRefused`
(a `DeliveryError`: the run stops with one clear message); an identity
platform that cannot be reached raises `TokenUnavailable`, which transports
turn into `temporary` results. The client secret and every token are kept
out of `repr`, messages and logs; `scrub` removes them from any text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from newsletter.core.errors import (
    ConfigError,
    TokenRefused,
    TokenUnavailable,
)
from newsletter.core.ratelimit import Clock, SystemClock
from newsletter.core.scrub import SecretScrubber
from newsletter.core.setting_parts import Secret
from newsletter.core.settings import https_ca_bundle
from newsletter.transports.microsoft.settings import (
    AUTHORITY_ENV,
    CERTIFICATE_ENV,
    CLIENT_ID_ENV,
    CLIENT_SECRET_ENV,
    DEFAULT_AUTHORITY,
    TENANT_ENV,
    OAuthSettings,
)

SMTP_SCOPE = "https://outlook.office365.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# MSAL itself treats a cached token within five minutes of expiry as expired.
REFRESH_MARGIN = 300.0

# What to check when the identity platform keeps failing: the app registration and where it is.
IDENTITY_SETTINGS = (
    f"the Microsoft identity platform's settings: {TENANT_ENV}, {CLIENT_ID_ENV}, "
    f"{CLIENT_SECRET_ENV} (or {CERTIFICATE_ENV}) and {AUTHORITY_ENV}"
)

# What each refusal means for the person who has to fix it.
_REFUSALS = {
    "invalid_client": f"the client secret or certificate was refused; check {CLIENT_SECRET_ENV} "
    f"(or {CERTIFICATE_ENV}) and that it has not expired in the app registration",
    "unauthorized_client": f"the application is not known in this tenant; check {CLIENT_ID_ENV} "
    f"and {TENANT_ENV}",
    "invalid_scope": "the scope was refused; the app registration needs the application "
    "permission for this route (SMTP.SendAsApp or Mail.Send) with admin consent",
    "invalid_request": f"the request was refused; check {TENANT_ENV} and {CLIENT_ID_ENV}",
}


@dataclass(frozen=True)
class MicrosoftIdentity:
    """Who the newsletter is in Microsoft Entra ID: the app registration and its credential."""

    tenant_id: str
    client_id: str
    client_secret: Secret | None = None
    certificate_path: Path | None = None
    certificate_password: Secret | None = None
    authority_host: str = DEFAULT_AUTHORITY

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}"

    @property
    def custom_authority(self) -> bool:
        """True for an authority host MSAL must take as given (no instance discovery)."""
        return self.authority_host.rstrip("/") != DEFAULT_AUTHORITY

    @classmethod
    def from_settings(cls, oauth: OAuthSettings) -> MicrosoftIdentity:
        """The app registration from the `oauth` settings; ConfigError names what is missing."""
        missing = oauth.missing()
        if missing:
            raise ConfigError(
                "Microsoft 365 OAuth2 needs the app registration in the environment: set "
                + ", ".join(missing)
            )
        return cls(
            tenant_id=str(oauth.tenant_id),
            client_id=str(oauth.client_id),
            client_secret=oauth.client_secret or None,
            certificate_path=oauth.certificate_path,
            certificate_password=oauth.certificate_password or None,
            authority_host=oauth.authority.rstrip("/"),
        )


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it expires on the provider's clock. Never shown by repr()."""

    value: str = field(repr=False)
    expires_at: float


class TokenSource(Protocol):
    """What a transport needs from a token provider."""

    def token(self) -> AccessToken: ...

    def expiring(self, token: AccessToken) -> bool: ...

    def invalidate(self, token: AccessToken | None = None) -> None: ...

    def scrub(self, text: str) -> str: ...


def https_verify() -> str | bool:
    """The CA bundle HTTPS clients trust when none is handed in (see `settings.https_ca_bundle`)."""
    return https_ca_bundle()


class TokenProvider:
    """App-only tokens for one scope, cached for the run and refreshed before they expire.

    Safe to share between worker threads. MSAL's own cache works on wall
    time; ours on the injected clock, so a fake clock in tests (or the
    dispatcher's clock) decides when a token is too old to use.
    """

    def __init__(
        self,
        identity: MicrosoftIdentity,
        scope: str,
        *,
        clock: Clock | None = None,
        refresh_margin: float = REFRESH_MARGIN,
        timeout: float = 30.0,
        verify: str | bool | None = None,
        application_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.identity = identity
        self.scope = scope
        self.clock = clock or SystemClock()
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self.verify = https_verify() if verify is None else verify
        self.tokens_issued = 0
        self._application_factory = application_factory
        self._application: Any = None
        self._current: AccessToken | None = None
        self._seen: list[str] = []  # every token handed out, for scrubbing
        self._lock = threading.RLock()  # scrub() runs inside token() too

    def __repr__(self) -> str:
        return f"TokenProvider({self.identity.client_id!r}, {self.scope!r})"

    def token(self) -> AccessToken:
        """A token valid for at least `refresh_margin` more seconds; fetched only when needed."""
        with self._lock:
            current = self._current
            if current is not None and not self._expiring(current):
                return current
            fresh = self._acquire()
            self._current = fresh
            self.tokens_issued += 1
            self._seen.append(fresh.value)
            return fresh

    def expiring(self, token: AccessToken) -> bool:
        """True once `token` is within `refresh_margin` of expiring: time to get another."""
        return self._expiring(token)

    def invalidate(self, token: AccessToken | None = None) -> None:
        """Forget the cached token (a service refused it), so the next call fetches a new one."""
        with self._lock:
            if token is None or token == self._current:
                self._current = None

    def scrub(self, text: str) -> str:
        """`text` without the client secret, the certificate's passphrase or any token we
        issued, in any encoding they travel in (see `core.scrub`)."""
        with self._lock:
            values = list(self._seen)
        for secret in (self.identity.client_secret, self.identity.certificate_password):
            if secret:
                values.append(secret.reveal())
        return SecretScrubber(values)(text)

    def _expiring(self, token: AccessToken) -> bool:
        return self.clock.time() >= token.expires_at - self.refresh_margin

    # -- MSAL ----------------------------------------------------------------

    def _acquire(self) -> AccessToken:
        application = self._msal()
        # Our clock decided the cached token is too old; MSAL (on wall time) might
        # still hand it back, so its cached access tokens are dropped first.
        cache = application.token_cache
        for entry in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(entry)
        import requests  # imported here, as msal is: SMTP with a password never needs it
        from msal.exceptions import MsalServiceError

        try:
            result = application.acquire_token_for_client(scopes=[self.scope])
        except MsalServiceError as error:  # MSAL's answer to a 5xx from the token endpoint
            raise TokenUnavailable(
                f"the Microsoft identity platform could not issue a token "
                f"({_short(self.scrub(str(error)))}); try again later",
                IDENTITY_SETTINGS,
            ) from None
        except requests.exceptions.SSLError as error:
            raise self._untrusted(error) from None
        except requests.RequestException as error:
            raise TokenUnavailable(
                f"the Microsoft identity platform at {self.identity.authority_host} could not "
                f"be reached ({type(error).__name__}); try again later",
                IDENTITY_SETTINGS,
            ) from None
        if not isinstance(result, dict):
            raise TokenUnavailable(
                "the Microsoft identity platform gave no answer", IDENTITY_SETTINGS
            )
        token = result.get("access_token")
        if isinstance(token, str) and token:
            expires_in = float(result.get("expires_in") or 0)
            return AccessToken(token, self.clock.time() + expires_in)
        # Both fields are the platform's words: whatever it echoes is scrubbed, in any encoding.
        error_code = _short(self.scrub(str(result.get("error") or "unknown_error")), 80)
        description = self.scrub(" ".join(str(result.get("error_description", "")).split()))
        first_line = description.split(" Trace ID:")[0][:300]
        if error_code in ("temporarily_unavailable", "server_error", "unknown_error"):
            raise TokenUnavailable(
                f"the Microsoft identity platform could not issue a token ({error_code}: "
                f"{first_line}); try again later",
                IDENTITY_SETTINGS,
            )
        hint = _REFUSALS.get(error_code, f"check {TENANT_ENV}, {CLIENT_ID_ENV} and the credential")
        raise TokenRefused(
            f"Microsoft identity refused a token for {self.scope} ({error_code}: {first_line}); "
            f"{hint}"
        )

    def _msal(self) -> Any:
        if self._application is not None:
            return self._application
        identity = self.identity
        options: dict[str, Any] = {
            "client_credential": self._credential(),
            "authority": identity.authority,
            "timeout": self.timeout,
            "verify": self.verify,
        }
        if identity.custom_authority:
            options.update(instance_discovery=False, validate_authority=False)
        import requests  # imported here: see `_acquire`

        factory = self._application_factory
        if factory is None:
            import msal  # imported here: only the OAuth2 routes pay for it

            factory = msal.ConfidentialClientApplication
        try:
            # MSAL reads the authority's OpenID configuration while constructing.
            self._application = factory(identity.client_id, **options)
        except requests.exceptions.SSLError as error:
            raise self._untrusted(error) from None
        except requests.RequestException as error:
            raise TokenUnavailable(
                f"the Microsoft identity platform at {identity.authority_host} could not be "
                f"reached ({type(error).__name__}); try again later",
                IDENTITY_SETTINGS,
            ) from None
        except ValueError as error:
            if "authority" not in str(error).lower():
                # MSAL could not use the certificate (not a key, wrong passphrase).
                raise ConfigError(
                    f"{CERTIFICATE_ENV}: the certificate cannot be used "
                    f"({_short(self.scrub(str(error)), 160)}); it must hold the private key "
                    "and its certificate"
                ) from None
            # Tenant discovery answered 4xx: the tenant does not exist there.
            raise TokenRefused(
                f"Microsoft identity at {identity.authority_host} does not know the tenant "
                f"`{identity.tenant_id}` ({_short(self.scrub(str(error)))}); check {TENANT_ENV}"
                + (f" and {AUTHORITY_ENV}" if identity.custom_authority else "")
            ) from None
        return self._application

    def _credential(self) -> str | dict[str, str]:
        identity = self.identity
        if identity.certificate_path is not None:
            path = identity.certificate_path
            password = identity.certificate_password
            if path.suffix.lower() in (".pfx", ".p12"):
                # MSAL reads PKCS#12 itself and signs with the SHA-256 thumbprint.
                credential = {"private_key_pfx_path": str(path)}
            else:
                try:
                    pem = path.read_text(encoding="ascii")
                except (OSError, UnicodeDecodeError) as error:
                    reason = error.strerror if isinstance(error, OSError) else "not a PEM file"
                    raise ConfigError(
                        f"{CERTIFICATE_ENV}: the certificate file {path} cannot be read ({reason})"
                    ) from None
                if "PRIVATE KEY-----" not in pem or "BEGIN CERTIFICATE-----" not in pem:
                    raise ConfigError(
                        f"{CERTIFICATE_ENV}: {path} must hold the private key and its "
                        "certificate in one PEM file (or be a .pfx file)"
                    )
                # One PEM file holding the private key and its certificate: MSAL
                # takes the key from it and works out the thumbprint from the cert.
                credential = {"private_key": pem, "public_certificate": pem}
            if password:
                credential["passphrase"] = password.reveal()
            return credential
        if identity.client_secret is None:
            raise ConfigError(f"set {CLIENT_SECRET_ENV} or {CERTIFICATE_ENV} for Microsoft 365")
        return identity.client_secret.reveal()

    def _untrusted(self, error: Exception) -> TokenRefused:
        return TokenRefused(
            f"the certificate of {self.identity.authority_host} cannot be trusted "
            f"({_short(str(error), 160)}); check {AUTHORITY_ENV}, or point REQUESTS_CA_BUNDLE "
            "(or SSL_CERT_FILE) at your organisation's certificate authority"
        )


def xoauth2_response(user: str, token: AccessToken) -> str:
    """The SASL XOAUTH2 initial response (before base64), as Microsoft and Google document it."""
    return f"user={user}\x01auth=Bearer {token.value}\x01\x01"


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
