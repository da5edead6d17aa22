"""Stage 7 — hand hardened, audited KVM hosts to Nova as compute nodes (not built yet).

What will live here (issue "Hand-off to Nova"): nova-compute's configuration rendered
from the node's stored profile plan (``[compute] cpu_dedicated_set``/``cpu_shared_set``,
``reserved_host_memory_mb``, ``reserved_huge_pages``, ``[pci] device_spec``/``alias``),
the harden stage's libvirt TLS material and the site, validated against Nova's own
option definitions before anything is written; the audit gate; starting nova-compute and
mapping it into its cell; and verification from Nova's and Placement's own APIs that
the inventories match the plan.
"""
