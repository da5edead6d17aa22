"""Where provisioning keeps its state when the caller names no place (the CLI, the run
and a library caller share these), and the boot service's ``ADDR[:PORT]``."""

from __future__ import annotations

from pathlib import Path

from metalctl import settings
from metalctl.data import fields

BOOT_PORT = 8080


def state_dir() -> Path:
    """The boot service's state: ``$METALCTL_BOOT_STATE``, else
    ``~/.local/state/metalctl/boot``."""
    return Path(str(settings.get("METALCTL_BOOT_STATE")))


def known_hosts() -> Path:
    """``$METALCTL_KNOWN_HOSTS``, else ``~/.local/state/metalctl/known_hosts``: the host
    keys installs delivered, read by harden, audit and hand-off."""
    return Path(str(settings.get("METALCTL_KNOWN_HOSTS")))


def serve_address(spec: str, source: str = "--serve", field: str = "ADDR[:PORT]"
                  ) -> tuple[str, int]:
    """``ADDR[:PORT]`` of the boot service (port 8080 when none is given).

    Raises:
        InputError: not an address with a port in 1-65535, naming ``source`` and ``field``.
    """
    host, port = fields.host_port(spec, source, field, default_port=BOOT_PORT)
    return host, port or BOOT_PORT
