"""Stage 5 — harden KVM hosts over SSH: SELinux + sVirt, libvirt TLS with the site PKI,
trusted patch repositories, sshd policy (one drop-in, proven by a second login), sysctls
(applied only where the kernel is the host's) and audit rules. Rules are data
(``hardening/rules``) evaluated by the shared rules engine; one SSH session per host;
check mode returns the diff.
"""

from metalctl.harden.run import HardenOptions, HostResult, harden, harden_host

__all__ = ["HardenOptions", "HostResult", "harden", "harden_host"]
