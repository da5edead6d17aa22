"""The few Nova and Placement calls the hand-off makes, over :class:`metalctl.cloud.Cloud`.

Compute API v2.1 at microversion 2.88 (service and hypervisor ids are UUIDs from 2.53;
a hypervisor's id is its resource provider's uuid), Placement 1.39.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from metalctl.cloud import Cloud
from metalctl.errors import CloudError

COMPUTE_MV = "2.88"
PLACEMENT_MV = "1.39"
BINARY = "nova-compute"


class NovaApi:
    """Nova and Placement as the hand-off sees them."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    def _compute(self, method: str, path: str, body: Any = None) -> Any:
        return self.cloud.request("compute", method, path, body=body, microversion=COMPUTE_MV)

    def _placement(self, method: str, path: str, body: Any = None) -> Any:
        return self.cloud.request("placement", method, path, body=body,
                                  microversion=PLACEMENT_MV)

    def ping(self) -> None:
        """One cheap call to each API; raises :class:`CloudUnavailable` when one is down."""
        self._compute("GET", f"/os-services?binary={BINARY}&host=metalctl-ping")
        self._placement("GET", "/resource_providers?name=metalctl-ping")

    def service(self, host: str) -> dict[str, Any] | None:
        """The nova-compute service record of ``host`` (``[DEFAULT] host``), if any."""
        found = self._compute("GET", f"/os-services?binary={BINARY}&host={host}")["services"]
        return found[0] if found else None

    def services(self) -> list[dict[str, Any]]:
        """Every nova-compute service record."""
        return self._compute("GET", f"/os-services?binary={BINARY}")["services"]

    def delete_service(self, service_id: str) -> None:
        """Delete a compute service; Nova removes its compute nodes and their providers."""
        self._compute("DELETE", f"/os-services/{service_id}")

    def set_status(self, service_id: str, enabled: bool, reason: str | None = None) -> dict:
        """Enable or disable a compute service (a disabled one is not scheduled to)."""
        body: dict[str, Any] = {"status": "enabled" if enabled else "disabled"}
        if reason and not enabled:
            body["disabled_reason"] = reason
        return self._compute("PUT", f"/os-services/{service_id}", body)["service"]

    def hypervisors(self, host: str) -> list[dict[str, Any]]:
        """The hypervisors whose compute service runs on ``host`` (mapped into a cell)."""
        found = self._compute("GET", "/os-hypervisors/detail")["hypervisors"]
        return [h for h in found if (h.get("service") or {}).get("host") == host]

    def provider(self, uuid: str) -> dict[str, Any] | None:
        """A resource provider, or None when Placement has none with ``uuid``."""
        try:
            return self._placement("GET", f"/resource_providers/{uuid}")
        except CloudError as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    def delete_provider(self, uuid: str) -> None:
        """Delete a resource provider (left behind by an earlier install)."""
        self._placement("DELETE", f"/resource_providers/{uuid}")

    def inventories(self, uuid: str) -> dict[str, dict[str, Any]]:
        """The provider's inventories by resource class; none while Placement has no such
        provider (nova-compute creates it just after the compute node the hypervisor
        list shows)."""
        try:
            found = self._placement("GET", f"/resource_providers/{uuid}/inventories")
        except CloudError as exc:
            if getattr(exc, "status", None) == 404:
                return {}
            raise
        return found["inventories"]

    def children(self, uuid: str) -> list[dict[str, Any]]:
        """Providers in the tree of ``uuid`` other than itself (PCI devices, NUMA...)."""
        tree = self._placement("GET", f"/resource_providers?in_tree={uuid}")
        return [p for p in tree["resource_providers"] if p["uuid"] != uuid]

    # --- profiles published: traits, aggregates, flavors ---------------------------------

    def traits(self, uuid: str) -> tuple[list[str], int]:
        """The provider's traits and its generation (for :meth:`set_traits`)."""
        found = self._placement("GET", f"/resource_providers/{uuid}/traits")
        return found["traits"], found["resource_provider_generation"]

    def ensure_trait(self, name: str) -> None:
        """Create the custom trait ``name`` (``CUSTOM_...``) unless Placement has it."""
        self._placement("PUT", f"/traits/{name}")

    def set_traits(self, uuid: str, traits: list[str], generation: int) -> None:
        """Replace the provider's traits (409 when ``generation`` is stale)."""
        self._placement("PUT", f"/resource_providers/{uuid}/traits",
                        {"traits": sorted(traits), "resource_provider_generation": generation})

    def providers_with(self, trait: str) -> list[dict[str, Any]]:
        """The resource providers that have ``trait``."""
        return self._placement("GET", f"/resource_providers?required={trait}"
                               )["resource_providers"]

    def aggregates(self) -> list[dict[str, Any]]:
        """Nova's host aggregates (with their hosts and metadata)."""
        return self._compute("GET", "/os-aggregates")["aggregates"]

    def create_aggregate(self, name: str) -> dict[str, Any]:
        """A new host aggregate named ``name``."""
        return self._compute("POST", "/os-aggregates", {"aggregate": {"name": name}}
                             )["aggregate"]

    def aggregate_action(self, agg_id: int, action: str, value: Any) -> dict[str, Any]:
        """``add_host``/``set_metadata`` on an aggregate; the aggregate after it."""
        return self._compute("POST", f"/os-aggregates/{agg_id}/action", {action: value}
                             )["aggregate"]

    def flavors(self) -> list[dict[str, Any]]:
        """Every flavor, public or not, with its extra specs (2.61+)."""
        return self._compute("GET", "/flavors/detail?is_public=None")["flavors"]

    def create_flavor(self, name: str, vcpus: int, ram_mb: int, disk_gb: int,
                      public: bool) -> dict[str, Any]:
        """A new flavor (Nova picks its id)."""
        return self._compute("POST", "/flavors", {"flavor": {
            "name": name, "vcpus": vcpus, "ram": ram_mb, "disk": disk_gb,
            "os-flavor-access:is_public": public}})["flavor"]

    def delete_flavor(self, flavor_id: str) -> None:
        """Delete a flavor (servers keep the copy embedded in them)."""
        self._compute("DELETE", f"/flavors/{flavor_id}")

    def set_extra_specs(self, flavor_id: str, specs: dict[str, str]) -> None:
        """Add or overwrite extra specs of a flavor."""
        self._compute("POST", f"/flavors/{flavor_id}/os-extra_specs", {"extra_specs": specs})

    def delete_extra_spec(self, flavor_id: str, key: str) -> None:
        """Remove one extra spec of a flavor."""
        self._compute("DELETE", f"/flavors/{flavor_id}/os-extra_specs/{key}")

    # --- the canary: one server, its allocations ------------------------------------------

    def create_server(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a server (``host`` targets a compute, 2.74+)."""
        return self._compute("POST", "/servers", {"server": body})["server"]

    def server(self, server_id: str) -> dict[str, Any] | None:
        """A server, or None once it is gone."""
        try:
            return self._compute("GET", f"/servers/{server_id}")["server"]
        except CloudError as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    def servers_named(self, name: str) -> list[dict[str, Any]]:
        """Servers of any project whose name is exactly ``name`` (id and name)."""
        found = self._compute("GET", f"/servers?all_tenants=1&name=^{quote(name)}$")
        return [s for s in found.get("servers", []) if s.get("name") == name]

    def delete_server(self, server_id: str) -> None:
        """Delete a server (asynchronous: poll :meth:`server` until None)."""
        self._compute("DELETE", f"/servers/{server_id}")

    def allocations(self, consumer: str) -> dict[str, Any]:
        """Placement's allocations of a consumer (a server): provider -> resources."""
        return self._placement("GET", f"/allocations/{consumer}")["allocations"]
