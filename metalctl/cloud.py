"""REST access to an OpenStack cloud's Nova and Placement APIs through keystoneauth.

Two ways in, as for Ironic (:mod:`metalctl.ironic`):

* ``cloud``: a ``clouds.yaml`` entry (openstacksdk config, a keystoneauth session with
  whatever auth type Keystone offers); endpoints come from the service catalogue and
  microversions travel as ``OpenStack-API-Version``;
* explicit endpoints without Keystone (the lab): a session without auth, with the
  headers keystonemiddleware would have set for nova-api (``X-User-Id``,
  ``X-Project-Id``, ``X-Roles``) and Placement's ``noauth2`` token.

With :mod:`metalctl.ironic`, the only importer of keystoneauth/openstacksdk; their
exceptions are translated here by class. TLS is verified (the session's default).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session

from metalctl.credentials import Secret
from metalctl.errors import CloudError, CloudUnavailable

LOG = logging.getLogger(__name__)

SERVICES = ("compute", "placement")


@dataclass(frozen=True)
class CloudConfig:
    """How metalctl itself reaches Nova and Placement.

    Attributes:
        cloud: a clouds.yaml entry (keystoneauth); or else the endpoints below.
        compute_endpoint: nova-api's URL, ``.../v2.1`` (no Keystone).
        placement_endpoint: Placement's URL (no Keystone).
        compute_headers: identity headers nova-api takes without authtoken.
        placement_token: Placement's ``noauth2`` token.
        timeout_s: bound on each request.
        verify: TLS verification (True, or a CA bundle path).
    """

    cloud: str | None = None
    compute_endpoint: str | None = None
    placement_endpoint: str | None = None
    compute_headers: Mapping[str, str] = field(default_factory=dict)
    placement_token: Secret | None = None
    timeout_s: float = 15.0
    verify: bool | str = True


class Cloud:
    """A keystoneauth session to Nova and Placement. Construct, then :meth:`open`."""

    def __init__(self, config: CloudConfig) -> None:
        self.config = config
        self._session: ks_session.Session | None = None

    def open(self) -> Cloud:
        """Build the session (reads clouds.yaml when ``cloud`` is set).

        Raises:
            CloudUnavailable: the clouds.yaml entry cannot be loaded.
        """
        if self.config.cloud:
            import openstack.config  # noqa: PLC0415 - only for clouds.yaml users
            try:
                region = openstack.config.OpenStackConfig().get_one(cloud=self.config.cloud)
                self._session = region.get_session()
            except Exception as exc:  # noqa: BLE001 - openstacksdk raises many kinds
                raise CloudUnavailable(service="clouds.yaml",
                                       reason=f"{self.config.cloud}: {type(exc).__name__}",
                                       status=None) from None
        else:
            self._session = ks_session.Session(verify=self.config.verify)
        return self

    def request(self, service: str, method: str, path: str, *, body: Any = None,
                microversion: str | None = None) -> Any:
        """One request to ``service`` (compute or placement); the JSON answer or None.

        Raises:
            CloudUnavailable: unreachable, timed out, or 5xx.
            CloudError: any other non-2xx answer (``status`` says which).
        """
        if self._session is None:
            self.open()
        assert self._session is not None
        kwargs: dict[str, Any] = {"raise_exc": False, "connect_retries": 0,
                                  "timeout": self.config.timeout_s,
                                  "headers": {"Accept": "application/json"}}
        if body is not None:
            kwargs["json"] = body
        if microversion:
            kwargs["microversion"] = microversion
            kwargs["microversion_service_type"] = service
        url = path
        if self.config.cloud:
            kwargs["endpoint_filter"] = {"service_type": service, "interface": "public"}
        else:
            url = self._endpoint(service) + path
            kwargs["headers"].update(self._noauth_headers(service))
            kwargs["authenticated"] = False
        try:
            resp = self._session.request(url, method, **kwargs)
        except (ks_exc.ConnectFailure, ks_exc.ConnectTimeout, ks_exc.DiscoveryFailure,
                ks_exc.EndpointNotFound, ks_exc.RequestTimeout, ks_exc.SSLError) as exc:
            raise CloudUnavailable(service=service, reason=f"{method} {path}: "
                                   f"unreachable ({type(exc).__name__})", status=None) from None
        except ks_exc.ClientException as exc:
            raise CloudError(service=service, reason=f"{method} {path}: "
                             f"{type(exc).__name__}", status=None) from None
        if resp.status_code >= 500:
            raise CloudUnavailable(service=service, reason=f"{method} {path}: HTTP "
                                   f"{resp.status_code}", status=resp.status_code)
        if resp.status_code >= 400:
            raise CloudError(service=service, reason=f"{method} {path}: HTTP "
                             f"{resp.status_code}: {resp.text[:300]}", status=resp.status_code)
        return resp.json() if resp.content else None

    def _endpoint(self, service: str) -> str:
        url = (self.config.compute_endpoint if service == "compute"
               else self.config.placement_endpoint)
        if not url:
            raise CloudError(service=service, reason="no endpoint configured", status=None)
        return url.rstrip("/")

    def _noauth_headers(self, service: str) -> dict[str, str]:
        if service == "compute":
            return dict(self.config.compute_headers)
        token = self.config.placement_token
        return {"X-Auth-Token": token.reveal()} if token else {}
