"""``metalctl handoff`` as a library: gate, render + validate, apply, register, verify.

Per host, in this order, so nothing is written for a host that fails a check:

1. the audit gate (:mod:`.gate`) on the store's audit history;
2. nova.conf rendered from the stored plan, the site and the PKI (:mod:`.novaconf`), and
   every host's validated against Nova's own options in one run (:mod:`.novaopts`): a
   bad option or value is an :class:`InputError` before anything is written (the
   validator runs while Nova is pinged and each host's read-only round trip is made);
3. one SSH session: read the host, write nova.conf through the rules engine's atomic
   apply when it differs (``check``: the masked diff only), remove an earlier install's
   records, (re)start nova-compute;
4. its service record, the cell mapping, the hypervisor, and Placement's inventories
   against the plan (:mod:`.verify`); on failure, nova-compute's own log line.

Success moves the node to ``handed-off`` (only from ``audited``) with the evidence as an
event. Nova or Placement down is :class:`CloudUnavailable` (exit 4), raised before any
host is touched; a re-run converges.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from metalctl import fleet, logredact, ssh
from metalctl.cloud import Cloud
from metalctl.errors import CloudUnavailable, HostDropped, HostUnreachable, InputError, describe
from metalctl.handoff import apply, canary, gate, novaconf, novaopts, publish, register, verify
from metalctl.handoff.model import HandoffOptions, HandoffResult, HandoffStatus
from metalctl.handoff.nova_api import NovaApi
from metalctl.handoff.novaopts import NovaValidatorError
from metalctl.handoff.site import HandoffSite
from metalctl.hosts import HostSpec, ssh_target
from metalctl.model.node import Event, Lifecycle
from metalctl.store import Store, now

LOG = logging.getLogger(__name__)
STAGE = "handoff"


def _plan_for(host: HostSpec, opts: HandoffOptions, store: Store | None) -> dict[str, Any]:
    if opts.plans and host.name in opts.plans:
        return opts.plans[host.name]
    node = store.find(host.name) if store is not None else None
    if node is None:
        raise InputError("plan", host.name, "not a node of the store and no plan given; "
                                            "run `metalctl profile derive` first")
    return novaconf.stored_plan(store, node["key"], host.name)  # type: ignore[arg-type]


def render_all(hosts: list[HostSpec], site: HandoffSite, opts: HandoffOptions,
               store: Store | None) -> dict[str, novaconf.NovaConf]:
    """Render every host's nova.conf (secrets registered with the log redaction).

    Raises:
        InputError: a host has no plan, the site overrides what the plan sets, or TLS
            migration lacks the host's certificates.
    """
    confs = {h.name: novaconf.render(_plan_for(h, opts, store), site.nova, h.name,
                                     h.mgmt_address, opts.pki) for h in hosts}
    for conf in confs.values():
        logredact.register(conf.secrets())
    return confs


def validate_all(confs: dict[str, novaconf.NovaConf]) -> None:
    """Validate every rendering against Nova's own options in one validator run.

    Raises:
        NovaConfigError: the first host whose configuration fails (names ``[section]
            option``); an InputError.
        NovaValidatorError: the validator could not run.
    """
    if not confs:
        return
    checked = novaopts.validate_many({f"nova.conf for {n}": c.masked()
                                      for n, c in confs.items()})
    for outcome in checked.values():
        if isinstance(outcome, novaopts.NovaConfigError):
            raise outcome


def handoff_host(host: HostSpec, conf: novaconf.NovaConf, site: HandoffSite, api: NovaApi,
                 opts: HandoffOptions, started: float | None = None,
                 validated: Callable[[], None] | None = None,
                 plan: dict[str, Any] | None = None) -> HandoffResult:
    """Configure, start, register and verify one host (the gate has passed), publish its
    profile and prove it with the canary.

    Args:
        host, conf, site, api, opts: the host, its rendering, the site, Nova, the options.
        plan: the host's profile plan (published to Nova, checked by the canary); None
            skips both (library callers that only configure).
        started: when the run began (``time.monotonic()``), for the phase timings kept
            in the evidence.
        validated: returns once every rendering passed Nova's options (raises otherwise);
            called after the read-only first round trip and before anything is written,
            so the SSH session opens while the validator runs.
    """
    started = started or time.monotonic()
    target = ssh_target(host, opts)
    conn = ssh.connect(target)
    try:
        state = apply.read_state(conn, target, opts.conf_path, site.nova.state_path,
                                 opts.log_path, host.name)
        file_plan = apply.plan_file(state, conf, opts.conf_path)
        if validated:
            validated()
        if opts.check:
            return _check_result(host, conf, api, opts, state, plan, file_plan)
        res = HandoffResult(host.name, HandoffStatus.FAILED, notes=list(conf.notes))
        res.notes += register.remove_earlier_install(api, host.name, state.compute_id)
        if file_plan.files:
            res.changed = [d.split(" ", 1)[1] for d in
                           apply.write(conn, target, file_plan, state.init, host.name)
                           if d.startswith("file ")]
        since = 0.0
        if file_plan.files or not state.running:
            # a restarted compute's record stays "up" on its old heartbeat for a minute,
            # but the new process refreshes it at start; a new record is new anyway (and
            # has no heartbeat until report_interval, 10 s, has passed)
            since = time.time() if api.service(host.name) else 0.0
            apply.start_service(conn, target, state, restart=bool(file_plan.files),
                                label=host.name)
            res.changed.append(f"service {state.service} "
                               + ("restarted" if file_plan.files and state.running
                                  else "started"))

        def log() -> str:
            return apply.read_log(conn, target, opts.log_path, state.log_size)

        res.evidence["timings_s"] = {"configured": round(time.monotonic() - started, 1)}
        _register_and_verify(host, conf, site, api, opts, state, res, log, since, started)
        if plan is not None and not res.error:
            _publish_and_prove(host, conf, site, api, opts, plan, res, conn, target, started)
        res.duration_s = round(time.monotonic() - started, 1)
        return res
    finally:
        conn.close()
        LOG.debug("handoff %s took %.1f s", host.name, time.monotonic() - started)


def _register_and_verify(host: HostSpec, conf: novaconf.NovaConf, site: HandoffSite,
                         api: NovaApi, opts: HandoffOptions, state: apply.HostState,
                         res: HandoffResult, log: Callable[[], str], since: float,
                         started: float) -> None:
    timings = res.evidence["timings_s"]
    try:
        svc = register.wait_service(api, host.name, site.register_timeout_s, log, since)
        timings["service_up"] = round(time.monotonic() - started, 1)
        svc = _lift_canary_disable(api, svc, opts, res)
        mapped = register.map_into_cell(site.cell_mapping, opts)
        hv = register.wait_hypervisor(api, host.name, site.register_timeout_s)
        timings["hypervisor_listed"] = round(time.monotonic() - started, 1)
    except register.RegistrationFailed as exc:
        res.error, res.log_line = str(exc), exc.log_line  # type: ignore[attr-defined]
        return
    want = verify.expected(conf)
    inventories, mismatches, line = verify.wait_inventories(
        api, hv["id"], want, state.libvirt_memory_mb, site.verify_timeout_s,
        lambda: register.log_failure(log()))
    provider = api.provider(hv["id"])
    timings["inventories_compared"] = round(time.monotonic() - started, 1)
    res.evidence = {"timings_s": timings,
        "service": {k: svc.get(k) for k in ("id", "host", "state", "status", "updated_at")},
        "hypervisor": {"id": hv["id"], "hypervisor_hostname": hv["hypervisor_hostname"]},
        "resource_provider": {"uuid": hv["id"], "name": (provider or {}).get("name")},
        "expected": want, "inventories": inventories,
        "libvirt_memory_mb": state.libvirt_memory_mb,
        "children": [p["name"] for p in api.children(hv["id"])],
        "cell_mapping": site.cell_mapping.method + (f": {mapped}" if mapped else ""),
        "nova_conf_sha256": hashlib.sha256(conf.reveal().encode()).hexdigest()}
    if mismatches or svc["status"] != "enabled":
        res.mismatches, res.log_line = mismatches, line
        problems = [str(m) for m in mismatches]
        if svc["status"] != "enabled":
            problems.append(f"compute service is disabled ({svc.get('disabled_reason')})")
        res.error = "; ".join(problems) + (f"; nova-compute: {line}" if line else "")
        return
    res.status = HandoffStatus.HANDED_OFF


def _check_result(host: HostSpec, conf: novaconf.NovaConf, api: NovaApi,
                  opts: HandoffOptions, state: apply.HostState, plan: dict[str, Any] | None,
                  file_plan: Any) -> HandoffResult:
    """``--check``: the nova.conf diff and what publishing the profile would change."""
    status = HandoffStatus.WOULD_CHANGE if file_plan.files else HandoffStatus.UNCHANGED
    res = HandoffResult(host.name, status, sorted(file_plan.files),
                        apply.diff(state, conf, opts.conf_path), notes=list(conf.notes))
    if plan is not None:
        hvs = api.hypervisors(host.name)
        pub = publish.plan(api, host.name, plan["profile"], plan,
                           hvs[0]["id"] if hvs else None)
        res.evidence["published"] = pub.to_dict()
        if pub.changes:
            res.status = HandoffStatus.WOULD_CHANGE
            res.changed += pub.changes
    return res


def _lift_canary_disable(api: NovaApi, svc: dict[str, Any], opts: HandoffOptions,
                         res: HandoffResult) -> dict[str, Any]:
    """A compute the canary disabled is enabled again for a new canary (one that another
    reason disabled stays disabled and fails the hand-off: see docs/handoff.md)."""
    reason = svc.get("disabled_reason") or ""
    if svc["status"] == "enabled" or not opts.canary or opts.check or \
            not reason.startswith(canary.REASON_PREFIX):
        return svc
    res.notes.append(f"enabled again for a new canary (disabled by an earlier one: "
                     f"{reason})")
    return {**svc, **api.set_status(svc["id"], enabled=True)}


def _publish_and_prove(host: HostSpec, conf: novaconf.NovaConf, site: HandoffSite,
                       api: NovaApi, opts: HandoffOptions, plan: dict[str, Any],
                       res: HandoffResult, conn: Any, target: ssh.SshTarget,
                       started: float) -> None:
    """The profile's flavors, the canary on the host, then the host's trait and
    aggregate; a failing canary disables the compute with the reason."""
    profile = plan["profile"]
    timings = res.evidence["timings_s"]
    res.status = HandoffStatus.FAILED
    changes = publish.apply_flavors(api, profile, plan)
    _team, canary_flavor = publish.flavors(profile, plan)
    if not opts.canary:
        res.evidence["canary"] = {"skipped": "--no-canary: no guest proved this host"}
    elif not site.canary_image:
        res.error = ("the site names no canary image (handoff.canary.image); "
                     "--no-canary skips the canary")
        return
    else:
        report = canary.run(api, conn, target, canary.CanaryRequest(
            host.name, canary_flavor.name, site.canary_image, conf, plan,
            site.canary_timeout_s, host.mgmt_address or ""))
        res.evidence["canary"] = report.to_dict()
        res.notes += report.notes
        timings["canary"] = round(time.monotonic() - started, 1)
        if not report.ok and report.cloud_error:
            res.error = (f"canary: Nova or Placement failed ({report.error}); the host "
                         "stays enabled: re-run once they answer")
            return
        if not report.ok:
            reason = (canary.REASON_PREFIX + report.failures())[:255]
            svc = api.set_status(res.evidence["service"]["id"], enabled=False, reason=reason)
            res.evidence["service"]["status"] = svc.get("status")
            res.error = f"{reason} (the compute service is now disabled)"
            return
    changes += publish.apply_host(api, host.name, profile, res.evidence["hypervisor"]["id"])
    res.evidence["published"] = {**publish.Publication(
        profile, publish.trait(profile), publish.aggregate(profile),
        [f.name for f in publish.flavors(profile, plan)]).to_dict(), "changes": changes}
    res.changed += changes
    res.status = HandoffStatus.HANDED_OFF


def handoff(hosts: list[HostSpec], inputs: HandoffSite, opts: HandoffOptions | None = None,
            *, store: Store | None = None,
            on_result: Callable[[HandoffResult], None] | None = None) -> list[HandoffResult]:
    """The hand-off stage: every host that passes the audit gate becomes a Nova compute
    whose Placement inventories are verified against its plan.

    Args:
        hosts: the hosts (names as the audit and the store know them).
        inputs: the site's Nova settings and how to reach Nova and Placement.
        opts: gate, check mode, SSH policy, concurrency.
        store: the audit history (the gate), the plans, and where events go.
        on_result: called once per host as soon as it is done.

    Raises:
        InputError: a plan is missing or a configuration fails Nova's own options
            (nothing was written anywhere).
        CloudUnavailable: Nova or Placement cannot be reached (nothing was written).
    """
    opts = opts or HandoffOptions()
    started = time.monotonic()
    results: list[HandoffResult] = []

    keys = {h.name: h.key or h.name for h in hosts}

    def finish(res: HandoffResult) -> None:
        res.key = keys.get(res.host, res.key)
        results.append(res)
        if store is not None and not opts.check:
            _record(store, res)
        if on_result:
            on_result(res)

    verdicts = {h.name: gate.check(store, h.name, opts.gate_severity, opts.audit_max_age_s)
                for h in hosts}
    passed = [h for h in hosts if verdicts[h.name].passed]
    for h in hosts:
        if not verdicts[h.name].passed:
            finish(HandoffResult(h.name, HandoffStatus.REFUSED, error=verdicts[h.name].reason,
                                 evidence={"gate": verdicts[h.name].to_dict()}))
    confs = render_all(passed, inputs, opts, store)
    plans = {h.name: _plan_for(h, opts, store) for h in passed}
    api = NovaApi(Cloud(inputs.api).open())
    with ThreadPoolExecutor(1, thread_name_prefix="metalctl-validate") as pool:
        # the validator (seconds of option discovery) runs while Nova is asked and each
        # host's first, read-only round trip is made; nothing is written before it passed
        validation = pool.submit(validate_all, confs)
        validated_at: list[float] = []

        def validated() -> None:
            validation.result()
            validated_at.append(round(time.monotonic() - started, 1))

        if passed and not opts.check:
            api.ping()  # CloudUnavailable before any host is touched
        aborted: list[BaseException] = []

        def done(o: fleet.TaskOutcome) -> None:
            if isinstance(o.error, InputError | NovaValidatorError | CloudUnavailable):
                aborted.append(o.error)  # the run's error, not this host's: raised below
                if not isinstance(o.error, CloudUnavailable):
                    return
            res = o.value if o.ok else HandoffResult(o.item.name, _failure_status(o.error),
                                                     error=describe(o.error))
            res.evidence.setdefault("gate", verdicts[res.host].to_dict())
            if "timings_s" in res.evidence and validated_at:
                res.evidence["timings_s"]["validated"] = min(validated_at)
            finish(res)

        for _ in fleet.run(passed, lambda h: handoff_host(h, confs[h.name], inputs, api,
                                                          opts, started, validated,
                                                          plans[h.name]),
                           concurrency=opts.concurrency, on_done=done):
            pass
        validation.result()  # with no host to work on, still an error
    if aborted:
        raise aborted[0]
    order = {h.name: i for i, h in enumerate(hosts)}
    return sorted(results, key=lambda r: order.get(r.host, 0))


def _failure_status(err: BaseException | None) -> HandoffStatus:
    if isinstance(err, HostUnreachable):
        return HandoffStatus.UNREACHABLE
    if isinstance(err, HostDropped):
        return HandoffStatus.FAILED
    return HandoffStatus.FAILED


def _record(store: Store, res: HandoffResult) -> None:
    node = store.find(res.host)
    if node is None:
        return
    store.add_event(Event(node["key"], STAGE, res.status.value, now(),
                          {k: v for k, v in res.to_dict().items() if k != "diff"}, res.error))
    if res.status is HandoffStatus.HANDED_OFF and \
            Lifecycle(node["state"]).rank >= Lifecycle.AUDITED.rank:
        store.set_state(node["key"], Lifecycle.HANDED_OFF)


def disable(hosts: list[HostSpec], inputs: HandoffSite, reason: str,
            opts: HandoffOptions | None = None, *, store: Store | None = None,
            on_result: Callable[[HandoffResult], None] | None = None) -> list[HandoffResult]:
    """Take hosts out of scheduling: disable their compute service, with ``reason``.

    Raises:
        InputError: no reason given.
        CloudUnavailable: Nova cannot be reached.
    """
    if not reason.strip():
        raise InputError("--reason", "reason", "say why the host leaves scheduling")
    api = NovaApi(Cloud(inputs.api).open())
    results = []
    for h in hosts:
        svc = api.service(h.name)
        if svc is None:
            res = HandoffResult(h.name, HandoffStatus.FAILED,
                                error="Nova has no compute service for this host")
        else:
            after = api.set_status(svc["id"], enabled=False, reason=reason)
            res = HandoffResult(h.name, HandoffStatus.DISABLED, evidence={"service": {
                k: after.get(k) for k in ("id", "host", "state", "status", "disabled_reason")}})
        results.append(res)
        if store is not None and (node := store.find(h.name)):
            store.add_event(Event(node["key"], STAGE, "disabled" if svc else "failed", now(),
                                  {"reason": reason, **res.evidence}, res.error))
        if on_result:
            on_result(res)
    return results


def offered(site: HandoffSite) -> list[publish.Offer]:
    """The flavors teams can request, with the hosts each can land on (``metalctl
    profile flavors``).

    Raises:
        CloudUnavailable: Nova or Placement cannot be reached.
    """
    return publish.offered(NovaApi(Cloud(site.api).open()))
