"""``POST /oauth/token``: OAuth2 client credentials through authlib's authorization server.

authlib's server is synchronous and framework-neutral; the async work (finding the client, storing
the token) happens around it: the client is loaded first, authlib validates the request and mints the
token, and ``save_token`` hands it back for storage in the same transaction.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from sqlalchemy.ext.asyncio import AsyncSession

from core.kernel import Kernel
from tenants.clients import find_client_for_token, store_token
from tenants.models import ApiClient, Tenant
from tenants.scopes import SCOPES, unknown_scopes
from tenants.security import digest, new_access_token, same_digest


class _Client(ClientMixin):
    def __init__(self, row: ApiClient) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(self.row.scopes)
        if not scope:
            return " ".join(sorted(allowed))
        return " ".join(sorted(set(scope.split()) & allowed))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return same_digest(digest(client_secret), self.row.secret_digest)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials" and self.row.revoked_at is None


class _FormRequest(OAuth2Request):
    def __init__(self, uri: str, headers: dict[str, str], form: dict[str, str]) -> None:
        super().__init__("POST", uri, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class _ClientCredentials(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class _Server(AuthorizationServer):
    def __init__(self, client: _Client | None, tenant: Tenant | None, ttl: int) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self._client, self._tenant = client, tenant
        self.issued: dict[str, Any] | None = None
        self.register_grant(_ClientCredentials)
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=self._new_token,
                expires_generator=lambda *a, **k: ttl,
            ),
        )

    def _new_token(self, *args: Any, **kwargs: Any) -> str:
        assert self._tenant is not None  # authlib mints only for a client query_client found, so a tenant's
        return new_access_token(self._tenant.id)

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def query_client(self, client_id: str) -> _Client | None:
        if self._client and self._client.get_client_id() == client_id:
            return self._client
        return None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.issued = token

    def validate_requested_scope(self, scope: str | None) -> None:
        """Refuse (``invalid_scope``) any scope that does not exist, naming the first few, and a request
        for only scopes the client lacks (its token could do nothing). authlib calls this once the client
        has authenticated, so neither answer tells a stranger anything about a client.
        """
        requested = normalised_scopes(scope)
        unknown = unknown_scopes(requested)
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise InvalidScopeError(description=f"Unknown scope(s): {', '.join(unknown[:5])}{more}")
        if requested and self._client and not set(requested) & set(self._client.row.scopes):
            raise InvalidScopeError(description="The client holds none of the requested scopes")

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, dict[str, str]]:
        return status, body, dict(headers)


def normalised_scopes(raw: str | None) -> list[str]:
    """The requested scopes, each once, in sorted order (RFC 6749 §3.3: a space-separated set)."""
    return sorted(set((raw or "").split()))


def _client_id_from(headers: dict[str, str], form: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0] or None
    return form.get("client_id")


def _problem_fields(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """OAuth2 error bodies keep RFC 6749 fields and also carry the problem+json members."""
    if status < 400:
        return body
    error = body.get("error", "invalid_request")
    return {
        **body,
        "type": f"https://kaquan.dev/problems/oauth/{error}",
        "title": error,
        "status": status,
        "code": f"oauth_{error}",
        "detail": body.get("error_description", error),
    }


async def token_response(
    kernel: Kernel, session: AsyncSession, raw_body: bytes, headers: dict[str, str], path: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Run the client credentials grant; returns (status, json body, headers)."""
    try:
        form = dict(parse_qsl(raw_body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        form = {}
    client_id = _client_id_from(headers, form)
    found = await find_client_for_token(session, client_id) if client_id else None
    tenant, row = found if found else (None, None)
    suspended = tenant is not None and not tenant.is_active
    server = _Server(
        _Client(row) if row and not suspended else None, tenant, kernel.settings.token_ttl_seconds
    )
    uri = kernel.settings.base_url.rstrip("/") + path
    # authlib reads "Authorization" in canonical case
    requested = normalised_scopes(form.get("scope"))
    if "scope" in form:
        form["scope"] = " ".join(requested)
    request = _FormRequest(
        uri, {"-".join(p.capitalize() for p in k.split("-")): v for k, v in headers.items()}, form
    )
    status, body, out_headers = server.create_token_response(request)
    if suspended and status >= 400:
        body = {"error": "invalid_client", "error_description": "This tenant is suspended"}
    if status == 200 and server.issued and row is not None:
        scopes = (server.issued.get("scope") or "").split()
        await store_token(
            session, row, server.issued["access_token"], scopes, kernel.settings.token_ttl_seconds
        )
    return status, _problem_fields(status, body), out_headers
