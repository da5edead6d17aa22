"""``metalctl audit``: read-only compliance scans of hosts (SSH) and BMCs (Redfish)."""
