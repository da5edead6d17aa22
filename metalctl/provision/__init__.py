"""Stage 4 — provision the OS through kickstart over PXE (not built yet).

What will live here (issue "Provision: install the OS with kickstart over PXE"):
rendering each node's kickstart from a template in ``kickstart/`` with the node's
stored profile plan (kernel arguments, tuned variables) and the site (repositories,
network, crypted root password, operator SSH keys), validating it with pykickstart for
the target OS, and following every node to ``installed`` either through Ironic's
``anaconda`` deploy interface or through metalctl's own boot service (iPXE scripts and
one-time-token kickstarts, DHCP/TFTP by dnsmasq), with the installed host's SSH host
keys delivered over the authenticated callback into metalctl's known_hosts.
"""
