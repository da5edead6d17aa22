"""Profiles published to Nova: what NFV teams request, and where it can land.

Per host: a Placement trait for its profile (``CUSTOM_METALCTL_PROFILE_<NAME>``) on the
compute's root provider, and membership of a host aggregate for the profile
(``metalctl-profile-<name>``, metadata ``metalctl_profile=<name>``). Per profile: a
public flavor ``metalctl.<name>`` from the plan's flavor extra specs
(``hw:cpu_policy``, ``hw:mem_page_size``, ``hw:numa_nodes``, ...; the PCI alias of its
VFs) plus ``trait:CUSTOM_METALCTL_PROFILE_<NAME>=required``, so a guest of that flavor
can only land on such a host; and a private ``metalctl.<name>.canary`` flavor, one
vCPU and the smallest memory its page size allows, that the hand-off's canary boots.

Order in the hand-off: the flavors (:func:`apply_flavors`), then the canary on the host
(:mod:`.canary`), then the trait and the aggregate (:func:`apply_host`): a host gets
the trait that lets teams' guests land only once the canary has proven it.

The trait, not the aggregate, does the scheduling: Placement filters on it before any
Nova filter runs (no ``AggregateInstanceExtraSpecsFilter`` needed). The aggregate is for
operators (``openstack aggregate show``) and for what Nova's aggregate-based features
want later.

:func:`plan` reads and returns the changes (``--check`` prints them); the two
``apply_`` functions carry them out. All are idempotent: a second run finds nothing to
change. nova-compute keeps traits it did not set itself (it refreshes its provider tree
from Placement).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from metalctl.errors import CloudError
from metalctl.handoff.nova_api import NovaApi

TRAIT_PREFIX = "CUSTOM_METALCTL_PROFILE_"
AGGREGATE_PREFIX = "metalctl-profile-"
FLAVOR_PREFIX = "metalctl."
CANARY_SUFFIX = ".canary"
#: the flavor a team gets when the profile names no workload
DEFAULT_VCPUS, DEFAULT_RAM_MB, DEFAULT_DISK_GB = 2, 2048, 1
#: Nova's hw:mem_page_size value -> MiB per page
PAGE_MB = {"2MB": 2, "1GB": 1024, "small": 0, "large": 0, "any": 0}
#: the canary's memory when its page size asks for no more (a kernel + busybox guest)
CANARY_RAM_MB = 128

_flavor_lock = threading.Lock()  # flavors are per profile: hosts of one run share them


def trait(profile: str) -> str:
    """The Placement trait of ``profile``: ``CUSTOM_METALCTL_PROFILE_NFV_SRIOV``."""
    return TRAIT_PREFIX + re.sub(r"[^A-Z0-9]+", "_", profile.upper()).strip("_")


def aggregate(profile: str) -> str:
    """The host aggregate's name for ``profile``."""
    return AGGREGATE_PREFIX + profile


@dataclass(frozen=True)
class FlavorSpec:
    """A flavor metalctl owns, as it must be in Nova."""

    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    public: bool
    extra_specs: dict[str, str]


def _page_mb(specs: dict[str, str]) -> int:
    size = specs.get("hw:mem_page_size", "")
    if size in PAGE_MB:
        return PAGE_MB[size]
    m = re.fullmatch(r"(\d+)\s*([KMG])B?", size, re.I)
    if not m:
        return 0
    return int(m.group(1)) * {"K": 1, "M": 1024, "G": 1024 * 1024}[m.group(2).upper()] // 1024


def _aliases(plan: dict[str, Any]) -> list[str]:
    return [a["name"] for a in ((plan.get("nova") or {}).get("pci") or {}).get("alias", [])]


def flavors(profile: str, plan: dict[str, Any]) -> tuple[FlavorSpec, FlavorSpec]:
    """The team's flavor and the canary's flavor for ``profile`` from a host's plan.

    The team's flavor is sized from the plan's workload (vCPUs, memory, VFs through the
    PCI alias); without one, :data:`DEFAULT_VCPUS` and :data:`DEFAULT_RAM_MB` rounded up
    to the page size. The canary's is one vCPU on one NUMA node, no VF (a host without
    VFs could not take it), and without the trait: it is booted on a host before the
    host gets the trait, so no team's guest lands on a host the canary has not proven.
    """
    specs = {k: str(v) for k, v in (plan.get("flavor_extra_specs") or {}).items()}
    specs[f"trait:{trait(profile)}"] = "required"
    work = (plan.get("workload") or {}).get("request") or {}
    page = _page_mb(specs)
    ram = int(work.get("memory_gib", 0) * 1024) or DEFAULT_RAM_MB
    if page:
        ram = -(-ram // page) * page
    team = dict(specs)
    aliases = _aliases(plan)
    if aliases and work.get("vfs"):
        team["pci_passthrough:alias"] = f"{aliases[0]}:{work['vfs']}"
    canary = {k: v for k, v in specs.items() if not k.startswith("trait:")}
    canary["hw:numa_nodes"] = "1"
    canary_ram = max(CANARY_RAM_MB, page) if page else CANARY_RAM_MB
    name = FLAVOR_PREFIX + profile
    return (FlavorSpec(name, int(work.get("vcpus", DEFAULT_VCPUS)), ram, DEFAULT_DISK_GB,
                       True, team),
            FlavorSpec(name + CANARY_SUFFIX, 1, canary_ram, DEFAULT_DISK_GB, False, canary))


@dataclass
class Publication:
    """What publishing one host's profile found and changed."""

    profile: str
    trait: str
    aggregate: str
    flavors: list[str]
    changes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the evidence."""
        return dict(self.__dict__)


def _find(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((i for i in items if i["name"] == name), None)


def _flavor_changes(api: NovaApi, want: FlavorSpec, flavors_: list[dict[str, Any]]
                    ) -> tuple[str, dict[str, Any] | None, list[str]]:
    """``create``, ``recreate`` (a size changed: Nova cannot update one), ``specs`` or
    ``same``; the flavor found; the extra spec changes as words."""
    have = _find(flavors_, want.name)
    if have is None:
        return "create", None, [f"flavor {want.name}: create"]
    sizes = (have["vcpus"], have["ram"], have["disk"], have["os-flavor-access:is_public"])
    wanted = (want.vcpus, want.ram_mb, want.disk_gb, want.public)
    if sizes != wanted:
        return "recreate", have, [f"flavor {want.name}: recreate (vcpus, ram, disk, public: "
                                  f"{sizes} -> {wanted})"]
    specs = have.get("extra_specs") or {}
    words = [f"flavor {want.name}: set {k}={v}" for k, v in sorted(want.extra_specs.items())
             if specs.get(k) != v]
    words += [f"flavor {want.name}: unset {k}" for k in sorted(specs)
              if k not in want.extra_specs]
    return ("specs" if words else "same"), have, words


def _host_changes(api: NovaApi, host: str, provider: str | None, trait_: str,
                  aggs: list[dict[str, Any]], agg_name: str) -> list[str]:
    agg = _find(aggs, agg_name)
    out = [f"aggregate {a['name']}: remove host {host}" for a in aggs
           if a["name"].startswith(AGGREGATE_PREFIX) and a["name"] != agg_name
           and host in (a.get("hosts") or [])]
    if agg is None:
        out.append(f"aggregate {agg_name}: create")
    if agg is None or host not in (agg.get("hosts") or []):
        out.append(f"aggregate {agg_name}: add host {host}")
    if provider is None:
        out.append(f"trait {trait_}: set on {host}'s provider (once it exists)")
        return out
    traits = api.traits(provider)[0]
    out += [f"trait {t}: removed from provider {provider}" for t in traits
            if t.startswith(TRAIT_PREFIX) and t != trait_]
    if trait_ not in traits:
        out.append(f"trait {trait_}: set on provider {provider}")
    return out


def plan(api: NovaApi, host: str, profile: str, plan_: dict[str, Any],
         provider: str | None) -> Publication:
    """What publishing ``profile`` for ``host`` would change (reads only).

    Args:
        api: Nova and Placement.
        host: the compute's ``[DEFAULT] host``.
        profile: the profile's name (the plan's ``profile``).
        plan_: the host's profile plan.
        provider: the compute's root resource provider (None: not registered yet).
    """
    trait_, agg_name = trait(profile), aggregate(profile)
    team, canary = flavors(profile, plan_)
    pub = Publication(profile, trait_, agg_name, [team.name, canary.name])
    pub.changes += _host_changes(api, host, provider, trait_, api.aggregates(), agg_name)
    existing = api.flavors()
    for want in (team, canary):
        pub.changes += _flavor_changes(api, want, existing)[2]
    return pub


def apply_flavors(api: NovaApi, profile: str, plan_: dict[str, Any]) -> list[str]:
    """Create or update the profile's two flavors; returns the changes made.

    Raises:
        CloudError: Nova refused a change.
    """
    with _flavor_lock:
        existing = api.flavors()
        return [w for want in flavors(profile, plan_)
                for w in _converge_flavor(api, want, existing)]


def apply_host(api: NovaApi, host: str, profile: str, provider: str) -> list[str]:
    """Give the host's provider the profile's trait and the host the profile's aggregate
    (from here on the team's flavor can land on it); returns the changes made.

    Raises:
        CloudError: Nova or Placement refused a change.
    """
    return _set_trait(api, provider, trait(profile)) + \
        _join_aggregate(api, host, profile, aggregate(profile))


def _set_trait(api: NovaApi, provider: str, trait_: str) -> list[str]:
    """The profile's trait on the provider, and no other profile's (a host re-profiled
    must stop attracting the old profile's guests)."""
    for _ in range(5):  # nova-compute updates the same provider: retry a stale generation
        traits, generation = api.traits(provider)
        stale = [t for t in traits if t.startswith(TRAIT_PREFIX) and t != trait_]
        if trait_ in traits and not stale:
            return []
        api.ensure_trait(trait_)
        try:
            api.set_traits(provider, [t for t in traits if t not in stale] + [trait_],
                           generation)
        except CloudError as exc:
            if getattr(exc, "status", None) == 409:
                continue
            raise
        return [f"trait {t}: removed from provider {provider}" for t in stale] + \
            ([] if trait_ in traits else [f"trait {trait_}: set on provider {provider}"])
    raise CloudError(service="placement", reason=f"provider {provider} kept changing: "
                     f"could not set {trait_}", status=409)


def _join_aggregate(api: NovaApi, host: str, profile: str, agg_name: str) -> list[str]:
    """The host in its profile's aggregate, and in no other profile's."""
    with _flavor_lock:
        aggs = api.aggregates()
        out = []
        for other in aggs:
            if other["name"].startswith(AGGREGATE_PREFIX) and other["name"] != agg_name \
                    and host in (other.get("hosts") or []):
                api.aggregate_action(other["id"], "remove_host", {"host": host})
                out.append(f"aggregate {other['name']}: remove host {host}")
        agg = _find(aggs, agg_name)
        if agg is None:
            agg = api.create_aggregate(agg_name)
            agg = api.aggregate_action(agg["id"], "set_metadata",
                                       {"metadata": {"metalctl_profile": profile}})
            out.append(f"aggregate {agg_name}: create")
        if host not in (agg.get("hosts") or []):
            api.aggregate_action(agg["id"], "add_host", {"host": host})
            out.append(f"aggregate {agg_name}: add host {host}")
    return out


def _converge_flavor(api: NovaApi, want: FlavorSpec, existing: list[dict[str, Any]]
                     ) -> list[str]:
    action, have, words = _flavor_changes(api, want, existing)
    if action == "same":
        return []
    if action in ("create", "recreate"):
        if have is not None:
            api.delete_flavor(have["id"])
        made = api.create_flavor(want.name, want.vcpus, want.ram_mb, want.disk_gb,
                                 want.public)
        api.set_extra_specs(made["id"], want.extra_specs)
        return words
    assert have is not None
    for key in (have.get("extra_specs") or {}):
        if key not in want.extra_specs:
            api.delete_extra_spec(have["id"], key)
    api.set_extra_specs(have["id"], want.extra_specs)
    return words


@dataclass
class Offer:
    """One flavor teams can request, and on how many hosts it can land."""

    flavor: str
    profile: str
    vcpus: int
    ram_mb: int
    extra_specs: dict[str, str]
    hosts: list[str]          # in the profile's aggregate and enabled in Nova
    providers: int            # resource providers carrying the profile's trait

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``metalctl profile flavors -o json``)."""
        return dict(self.__dict__)


def offered(api: NovaApi) -> list[Offer]:
    """The public flavors metalctl published, each with the hosts that can take it: in
    the profile's aggregate, enabled in Nova (a disabled host takes no new guest), and
    the number of providers with the profile's trait (what the scheduler filters on)."""
    enabled = {s["host"] for s in api.services() if s["status"] == "enabled"}
    aggs = {a["name"]: a for a in api.aggregates()}
    out = []
    for f in api.flavors():
        specs = f.get("extra_specs") or {}
        traits = [k.split(":", 1)[1] for k, v in specs.items()
                  if k.startswith("trait:" + TRAIT_PREFIX) and v == "required"]
        if not traits or not f.get("os-flavor-access:is_public", True):
            continue
        profile = f["name"].removeprefix(FLAVOR_PREFIX)
        members = (aggs.get(aggregate(profile)) or {}).get("hosts") or []
        out.append(Offer(f["name"], profile, f["vcpus"], f["ram"], specs,
                         sorted(h for h in members if h in enabled),
                         len(api.providers_with(traits[0]))))
    return sorted(out, key=lambda o: o.flavor)
