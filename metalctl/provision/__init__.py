"""Stage 4 — provision the OS through kickstart over PXE (partly built).

Built: :mod:`~metalctl.provision.kickstart` renders each node's kickstart from a template
in ``kickstart/`` with the node's stored profile plan (kernel arguments, tuned
variables), the site (the repositories harden enforces, network, crypted root password,
operator SSH keys) and the install's callback, and validates it with pykickstart for the
target OS plus metalctl's own ``bootloader --append`` checks;
:mod:`~metalctl.provision.shacrypt` hashes the root password (SHA-512 crypt).

Built too: the boot service of ``--via pxe`` (:mod:`~metalctl.provision.bootservice`: iPXE
scripts per MAC, one-time-token kickstarts, install callbacks with SSH host keys;
``bootserver`` its asyncio/h11 transport, ``bootstate`` its SQLite state, ``tokens``,
``hostkeys``) and the dnsmasq configuration writer (:mod:`~metalctl.provision.dnsmasq`),
run by ``metalctl serve``.

To come: following every node to ``installed`` through Ironic's ``anaconda`` deploy
interface or metalctl's own boot service (iPXE per MAC, one-time-token kickstarts,
dnsmasq), with the host keys delivered by the ``%post`` callback into metalctl's
known_hosts.
"""
