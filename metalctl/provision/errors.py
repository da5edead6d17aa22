"""Errors of the provision stage's boot service, in metalctl's one exception tree.

Kept beside the stage until they are folded into :mod:`metalctl.errors`; each one is a
:class:`~metalctl.errors.MetalctlError`, so the CLI maps them like every other error.
"""

from __future__ import annotations

from metalctl.errors import MetalctlError, PeerUnavailable


class ProvisionError(MetalctlError):
    """An install could not be prepared or followed."""

    message = "node %(node)s: %(reason)s"


class InstallConflict(ProvisionError):
    """The node already has an active install, or its MAC belongs to another one."""


class BootServiceError(PeerUnavailable):
    """The boot service cannot run (address in use, state directory unusable)."""

    message = "boot service %(where)s: %(reason)s"
