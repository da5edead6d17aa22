"""Connection to OpenStack Ironic, the way OpenStack users connect.

Either ``OS_CLOUD``/``--os-cloud`` with ``clouds.yaml`` (openstacksdk config,
keystoneauth session: every auth type Keystone supports), or an explicit
endpoint for a standalone Ironic with ``noauth`` (``--ironic-url`` or
``$METALCTL_IRONIC_URL``). metalctl never invents auth options of its own.

The only module that imports ironicclient, keystoneauth or openstacksdk; their
exceptions are translated here by class.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ironicclient import client as ironic_client
from ironicclient import exc as ironic_exc
from keystoneauth1 import exceptions as ks_exc

from metalctl.errors import IronicConflict, IronicError, IronicUnavailable, MetalctlError
from metalctl.logredact import scrub

LOG = logging.getLogger(__name__)
T = TypeVar("T")

#: Node fields metalctl reads; ``driver_info`` comes back with passwords masked as "******".
NODE_FIELDS = ["uuid", "name", "driver", "driver_info", "properties", "resource_class",
               "conductor_group", "provision_state", "target_provision_state", "power_state",
               "last_error", "maintenance", "extra"]


@dataclass(frozen=True)
class IronicConfig:
    """How to reach Ironic: ``cloud`` (clouds.yaml entry) or ``url`` (noauth)."""

    url: str | None = None
    cloud: str | None = None
    api_version: str = "latest"
    #: ironicclient's own retry of 409 (node locked) and refused connections
    max_retries: int = 2
    retry_interval_s: int = 1
    timeout_s: float = 60.0


def translate(exc: BaseException) -> MetalctlError:
    """Map an ironicclient/keystoneauth exception to metalctl's Ironic errors."""
    if isinstance(exc, MetalctlError):
        return exc
    if isinstance(exc, (ironic_exc.ConnectionRefused, ks_exc.ConnectFailure,
                        ks_exc.ConnectTimeout, ks_exc.DiscoveryFailure,
                        ks_exc.EndpointNotFound)):
        return IronicUnavailable(reason=f"API unreachable ({type(exc).__name__})")
    if isinstance(exc, ironic_exc.ServiceUnavailable | ironic_exc.HttpServerError):
        return IronicUnavailable(reason=f"API answered {getattr(exc, 'http_status', '5xx')}: "
                                        f"{_message(exc)}")
    if isinstance(exc, ironic_exc.Conflict):
        return IronicConflict(reason=_message(exc))
    if isinstance(exc, ks_exc.http.HttpError):
        return IronicError(reason=f"HTTP {exc.http_status}: {_message(exc)}")
    if isinstance(exc, ironic_exc.ClientException):
        return IronicError(reason=_message(exc))
    if isinstance(exc, ks_exc.ClientException):
        return IronicUnavailable(reason=type(exc).__name__)
    raise exc


def _message(exc: BaseException) -> str:
    """The peer's error text, one line, credentials masked (a peer may echo the request)."""
    text = str(getattr(exc, "message", "") or exc)
    # masked before truncating, so a cut can never leave a secret's prefix behind
    return scrub(text).replace("\n", " ")[:300]


def translated(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: call through to Ironic, re-raising peer errors as metalctl errors."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (ironic_exc.ClientException, ks_exc.ClientException) as exc:
            raise translate(exc) from None
    return wrapper


class Ironic:
    """A thin, translated facade over python-ironicclient's v1 client."""

    def __init__(self, config: IronicConfig) -> None:
        self.config = config
        self._client: Any = None

    def connect(self) -> Ironic:
        """Build the client and check that the API answers.

        Raises:
            IronicUnavailable: the API cannot be reached.
            MetalctlError: no cloud/url configured or clouds.yaml entry invalid.
        """
        cfg = self.config
        common = {"os_ironic_api_version": cfg.api_version, "max_retries": cfg.max_retries,
                  "retry_interval": cfg.retry_interval_s}
        try:
            if cfg.cloud:
                import openstack.config

                region = openstack.config.OpenStackConfig().get_one(cloud=cfg.cloud)
                # baremetal_endpoint_override in clouds.yaml (standalone Ironic behind a
                # cloud entry with auth_type: none) is honoured; otherwise the catalog
                endpoint = region.get_endpoint("baremetal")
                self._client = ironic_client.get_client(
                    "1", session=region.get_session(), region_name=region.region_name,
                    **({"endpoint": endpoint} if endpoint else {}), **common)
            elif cfg.url:
                self._client = ironic_client.get_client(
                    "1", endpoint=cfg.url, auth_type="none", timeout=cfg.timeout_s, **common)
            else:
                raise IronicError(reason="no Ironic configured: set OS_CLOUD / --os-cloud, "
                                         "or --ironic-url / METALCTL_IRONIC_URL (noauth)")
            self._client.driver.list()
        except (ironic_exc.ClientException, ks_exc.ClientException) as exc:
            raise translate(exc) from None
        except Exception as exc:  # openstack.config raises its own config errors
            if type(exc).__module__.startswith("openstack"):
                raise IronicError(reason=f"clouds.yaml: {exc}") from None
            raise
        return self

    @property
    def client(self) -> Any:
        if self._client is None:
            raise IronicError(reason="not connected")
        return self._client

    @translated
    def nodes(self) -> list[dict[str, Any]]:
        """Return every Ironic node (the ``NODE_FIELDS`` of each)."""
        return [n.to_dict() for n in self.client.node.list(fields=NODE_FIELDS,
                                                           limit=0)]

    @translated
    def states(self) -> list[dict[str, Any]]:
        """Provision states of all nodes: the cheapest list for polling a batch."""
        return [n.to_dict() for n in self.client.node.list(
            fields=["uuid", "provision_state", "target_provision_state", "last_error"],
            limit=0)]

    @translated
    def ports(self) -> list[dict[str, Any]]:
        """Return every Ironic port: uuid, address and node."""
        return [p.to_dict() for p in self.client.port.list(
            fields=["uuid", "address", "node_uuid"], limit=0)]

    @translated
    def node(self, ident: str) -> dict[str, Any]:
        """Return the Ironic node ``ident`` (UUID or name)."""
        return self.client.node.get(ident, fields=NODE_FIELDS).to_dict()

    @translated
    def create_node(self, **attrs: Any) -> dict[str, Any]:
        """Create an Ironic node with ``attrs`` and return it."""
        return self.client.node.create(**attrs).to_dict()

    @translated
    def update_node(self, uuid: str, patch: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply a JSON patch to node ``uuid`` and return the node."""
        return self.client.node.update(uuid, patch).to_dict()

    @translated
    def create_port(self, node_uuid: str, address: str) -> dict[str, Any]:
        """Create a port with MAC ``address`` on node ``node_uuid`` and return it."""
        return self.client.port.create(node_uuid=node_uuid, address=address).to_dict()

    @translated
    def set_provision_state(self, uuid: str, verb: str, **kwargs: Any) -> None:
        """``kwargs``: ``cleansteps``, ``disable_ramdisk`` ... as the client takes them."""
        self.client.node.set_provision_state(uuid, verb, **kwargs)

    @translated
    def bios_settings(self, uuid: str) -> dict[str, Any]:
        """Ironic's cached BIOS settings of a node, as name -> value."""
        return {s["name"]: s["value"] for s in self.client.node.list_bios_settings(uuid)}

    @translated
    def inventory(self, uuid: str) -> dict[str, Any]:
        """Inspection data (``inventory`` + ``plugin_data``), API 1.81+."""
        return self.client.node.get_inventory(uuid)

    @translated
    def set_boot_device(self, uuid: str, device: str, persistent: bool = False) -> None:
        """Ask Ironic to set node ``uuid``'s next boot device (``pxe``, ``disk``...)."""
        self.client.node.set_boot_device(uuid, device, persistent=persistent)

    @translated
    def set_power_state(self, uuid: str, state: str) -> None:
        """Ask Ironic to set node ``uuid``'s power ``state`` (on, off, reboot...)."""
        self.client.node.set_power_state(uuid, state)
