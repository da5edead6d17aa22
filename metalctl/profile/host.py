"""The plan made real on an installed host, beyond its kernel arguments.

The kickstart installs the plan's kernel arguments; what else the plan needs is written
here, over one SSH session, so that it holds across reboots:

* hugepages per NUMA node and SR-IOV VFs per NIC: ``/etc/metalctl/plan.conf`` (data),
  ``/usr/local/libexec/metalctl-plan`` (``hostplan/apply.sh``: writes
  ``/sys/devices/system/node/nodeN/hugepages/hugepages-<KiB>kB/nr_hugepages`` and
  ``sriov_numvfs``, 0 first when the count changes, as the kernel requires) and
  ``metalctl-plan.service`` (oneshot, enabled, before the network, libvirt and
  nova-compute), run once now. Per-node counts on the command line
  (``hugepages=0:N,1:M``) need Linux >= 5.16; RHEL 9's 5.14 takes them only from sysfs,
  which is what the unit writes at every boot.
* a hugetlbfs mount when the host has none (libvirt backs guests through it);
* tuned: ``/etc/tuned/cpu-partitioning-variables.conf`` ``isolated_cores=`` for a plan
  with ``tuned.variables``, and the plan's tuned profile activated when ``tuned-adm``
  exists (a note says so when it does not).

The host side is two POSIX ``sh`` scripts shipped beside this module
(``hostplan/install.sh`` with the plan's values prepended, which writes and runs
``hostplan/apply.sh``); the unit tests run those very scripts on recorded sysfs trees
(``METALCTL_ROOT``, ``METALCTL_SYSFS``). Idempotent: a second call reports only
``unchanged``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from metalctl.errors import HostDropped, HostError
from metalctl.profile.derive import PAGE_KIB, ProfilePlan
from metalctl.ssh import SshTarget, exec_script

#: where the host keeps what it applies at boot
PLAN_CONF = "/etc/metalctl/plan.conf"
APPLIER = "/usr/local/libexec/metalctl-plan"
UNIT_NAME = "metalctl-plan.service"
#: a NIC as the applier names it: a PCI address or an interface name, nothing a shell or
#: the data file's whitespace split could read otherwise
_NIC = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
#: a heredoc delimiter no value can contain (values are checked above)
_EOF = "METALCTL_PLAN_EOF"

UNIT = f"""[Unit]
Description=metalctl profile plan: hugepages per NUMA node and SR-IOV VFs
ConditionPathExists={PLAN_CONF}
# early, without the default dependencies: VFs exist before the network configures
# them, pages are taken before memory fragments and before libvirt or nova-compute
DefaultDependencies=no
After=local-fs.target systemd-modules-load.service systemd-udev-trigger.service
After=dev-hugepages.mount
Before=network-pre.target libvirtd.service virtqemud.service shutdown.target
Before=nova-compute.service openstack-nova-compute.service
Wants=network-pre.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={APPLIER}

[Install]
WantedBy=multi-user.target"""


def _script(name: str) -> str:
    return resources.files("metalctl.profile.hostplan").joinpath(name).read_text()


def plan_conf(plan: ProfilePlan) -> str:
    """The applier's data file for ``plan``: hugepages per NUMA node, VFs per NIC.

    Raises:
        HostError: a NIC name the data file could not carry as it is.
    """
    lines = [f"# metalctl profile plan of {plan.node} ({plan.profile}): applied at boot by "
             f"{UNIT_NAME}"]
    if plan.hugepage_size:
        kib = PAGE_KIB[plan.hugepage_size]
        lines += [f"hugepages {p.node} {kib} {int(p.hugepages)}" for p in plan.numa]
    for v in plan.vfs:
        nic = v.pci_address if v.pci_address and v.pci_address.count(":") == 2 else v.nic
        if not _NIC.match(nic or ""):
            raise HostError(host=plan.node, reason=f"NIC name {nic!r} cannot be planned")
        lines.append(f"vfs {nic} {int(v.vfs)}")
    return "\n".join(lines)


def install_script(plan: ProfilePlan) -> str:
    """``hostplan/install.sh`` with the plan's values above it (what runs on the host)."""
    tuned = plan.tuned or {}
    isolated = (tuned.get("variables") or {}).get("isolated_cores") or ""
    profile = tuned.get("profile") or ""
    for what, value in (("isolated_cores", isolated), ("tuned profile", profile)):
        if not re.fullmatch(r"[A-Za-z0-9_,.-]*", value):
            raise HostError(host=plan.node, reason=f"{what} {value!r} cannot be written")

    def heredoc(var: str, text: str) -> str:
        return f"{var}=$(cat <<'{_EOF}'\n{text}\n{_EOF}\n)\n"

    return ("#!/bin/sh\n" + heredoc("PLAN_CONF", plan_conf(plan))
            + heredoc("APPLY", _script("apply.sh").rstrip("\n")) + heredoc("UNIT", UNIT)
            + f"TUNED_PROFILE='{profile}'\nTUNED_ISOLATED='{isolated}'\n"
            + _script("install.sh"))


@dataclass
class Realized:
    """What making the plan real found and did on one host."""

    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: every sysfs write, in order (VFs go through 0 when their count changes)
    writes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """``unchanged`` or ``N change(s)``, for the report."""
        return f"{len(self.changed)} change(s)" if self.changed else "unchanged"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the evidence and the store's event."""
        return {"summary": self.summary, "changed": self.changed,
                "unchanged": len(self.unchanged), "notes": self.notes, "errors": self.errors}


def parse(output: str) -> Realized:
    """The scripts' lines (``changed|unchanged|note|error|write <what>``) as a result."""
    out = Realized()
    lists = {"changed": out.changed, "unchanged": out.unchanged, "note": out.notes,
             "error": out.errors, "write": out.writes}
    for line in output.splitlines():
        kind, _, what = line.partition(" ")
        if kind in lists and what:
            lists[kind].append(what)
    return out


def realize(conn: Any, target: SshTarget, plan: ProfilePlan) -> Realized:
    """Make ``plan`` real on the host of ``conn`` (root, or sudo in ``target``).

    Returns what changed; the host's own failures are in ``errors`` (the script goes on
    with the other items).

    Raises:
        HostDropped: the session ended mid-script.
        HostError: the script failed without saying why (a shell error).
    """
    result = exec_script(conn, target, install_script(plan))
    if result.exited == -1:
        raise HostDropped(host=target.label, reason="connection lost while applying the plan")
    done = parse(result.stdout)
    if result.exited != 0 and not done.errors:
        raise HostError(host=target.label, reason=f"plan script exited {result.exited}: "
                                                  f"{result.stderr.strip()[-300:]}")
    return done
