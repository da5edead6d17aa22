"""The few Nova and Placement calls the hand-off makes, over :class:`metalctl.cloud.Cloud`.

Compute API v2.1 at microversion 2.88 (service and hypervisor ids are UUIDs from 2.53;
a hypervisor's id is its resource provider's uuid), Placement 1.39.
"""

from __future__ import annotations

from typing import Any

from metalctl.cloud import Cloud, CloudError

COMPUTE_MV = "2.88"
PLACEMENT_MV = "1.39"
BINARY = "nova-compute"


class NovaApi:
    """Nova and Placement as the hand-off sees them."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    def _compute(self, method: str, path: str, body: Any = None) -> Any:
        return self.cloud.request("compute", method, path, body=body, microversion=COMPUTE_MV)

    def _placement(self, method: str, path: str) -> Any:
        return self.cloud.request("placement", method, path, microversion=PLACEMENT_MV)

    def ping(self) -> None:
        """One cheap call to each API; raises :class:`CloudUnavailable` when one is down."""
        self._compute("GET", f"/os-services?binary={BINARY}&host=metalctl-ping")
        self._placement("GET", "/resource_providers?name=metalctl-ping")

    def service(self, host: str) -> dict[str, Any] | None:
        """The nova-compute service record of ``host`` (``[DEFAULT] host``), if any."""
        found = self._compute("GET", f"/os-services?binary={BINARY}&host={host}")["services"]
        return found[0] if found else None

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
