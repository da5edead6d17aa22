"""The Nova venv: nova, openstack-placement and their servers, apart from metalctl.

Nova and Placement pin dozens of OpenStack libraries of their own release, so, like the
Ironic peers (:mod:`metalctl_lab.peers`), they live in a venv of their own
(``$METALCTL_NOVA_VENV``, default ``~/.cache/metalctl/nova``). Two things use it:

* the lab's Nova control plane (:mod:`metalctl_lab.nova`): nova-api under gunicorn,
  nova-conductor, nova-scheduler, placement-api, nova-compute with the libvirt driver;
* the hand-off stage's validator (``metalctl/handoff/validate_nova_conf.py``), which
  needs Nova's own option definitions and parsers; it finds the interpreter through
  ``$METALCTL_NOVA_PYTHON`` or this venv.

Glance has a venv of its own beside it (``$METALCTL_GLANCE_VENV``, default
``~/.cache/metalctl/glance``): glance 33.0.0, the release of nova 34.0.0, pins its own
OpenStack libraries; installing it into the Nova venv would move Nova's. Measured on
this machine: a fresh venv with ``glance==33.0.0`` in 41.6 s (255 MB), gunicorn 1.4 s more.

Versions are the ones verified in ../shared/LAB.md ("Nova and Placement on loopback"):
nova 34.0.0, openstack-placement 16, gunicorn 26 (``--no-control-socket``). ``pyroute2``
keeps os-vif from logging "Could not load 'ovs'" at every compute start.
``psycopg2-binary`` (a wheel: 1.8 s into an existing venv) is the driver of the lab
Nova's PostgreSQL (:mod:`metalctl_lab.nova_db`), with a stamp of its own
(:data:`DB_STAMP`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import venv
from pathlib import Path

from metalctl.errors import LabError

LOG = logging.getLogger(__name__)

NOVA_REQUIREMENTS = [
    "nova==34.0.0",
    "openstack-placement>=16,<17",
    "gunicorn>=26",  # --no-control-socket exists from 26 on
    "libvirt-python",  # builds against Debian's libvirt-dev (scripts/setup.sh installs it)
    "pyroute2",
    # nova 34.0.0 needs these at least; the 2026-08 upper-constraints pin them lower
    "keystoneauth1>=5.16.0",
    "oslo.versionedobjects>=3.12.0",
]
STAMP = "metalctl-requirements.txt"
#: the control plane's database driver (:mod:`metalctl_lab.nova_db`), stamped apart: the
#: computes do not need it, and the Nova release disk (:mod:`metalctl_lab.novadisk`) is
#: keyed by :data:`STAMP`, which this leaves as it was
DB_REQUIREMENTS = ["psycopg2-binary"]
DB_STAMP = "metalctl-db-requirements.txt"
PIP_TIMEOUT_S = 900  # a cold install builds ovs and libvirt-python: about 70 s measured


def venv_dir() -> Path:
    """Where the Nova venv lives (``$METALCTL_NOVA_VENV`` or the shared cache)."""
    return Path(os.environ.get("METALCTL_NOVA_VENV",
                               Path.home() / ".cache" / "metalctl" / "nova"))


def nova_bin(name: str) -> Path:
    """A console script or the interpreter of the Nova venv (``nova-manage``, ``python``)."""
    return venv_dir() / "bin" / name


def installed() -> bool:
    """True when the venv holds exactly the pinned requirements (the stamp matches)."""
    stamp = venv_dir() / STAMP
    return (stamp.exists() and stamp.read_text() == "\n".join(NOVA_REQUIREMENTS)
            and nova_bin("nova-compute").exists() and nova_bin("placement-manage").exists())


def ensure() -> Path:
    """Create the Nova venv and install the pinned requirements unless already there.

    Idempotent: a second call only compares the stamp file.

    Returns:
        The venv's directory.

    Raises:
        LabError: pip failed (its output's tail is in the message).
    """
    root = _ensure(venv_dir(), NOVA_REQUIREMENTS, installed(), "about a minute")
    db_stamp = root / DB_STAMP
    ready = db_stamp.exists() and db_stamp.read_text() == "\n".join(DB_REQUIREMENTS)
    return _ensure(root, DB_REQUIREMENTS, ready, "2 s", DB_STAMP)


def _ensure(root: Path, requirements: list[str], ready: bool, takes: str,
            stamp: str = STAMP) -> Path:
    """A venv at ``root`` with exactly ``requirements`` (recorded in its stamp file)."""
    if ready:
        return root
    if not (root / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=True).create(root)
    LOG.info("lab: pip install %s into %s (%s)", " ".join(requirements), root, takes)
    _pip(root, requirements)
    (root / stamp).write_text("\n".join(requirements))
    return root


def python() -> Path:
    """The interpreter that has nova, installing the venv first when needed.

    ``$METALCTL_NOVA_PYTHON`` names another interpreter with nova (for example a
    distribution's ``/usr/bin/python3`` on a controller); it is used as it is.

    Raises:
        LabError: the venv could not be installed.
    """
    explicit = os.environ.get("METALCTL_NOVA_PYTHON")
    if explicit:
        return Path(explicit)
    ensure()
    return nova_bin("python")


GLANCE_REQUIREMENTS = [
    "glance==33.0.0",  # the release of nova 34.0.0 (2026.2)
    "gunicorn>=26",    # Glance 33 runs only under a WSGI server (glance.wsgi.api)
]


def glance_venv_dir() -> Path:
    """Where the Glance venv lives (``$METALCTL_GLANCE_VENV`` or the shared cache)."""
    return Path(os.environ.get("METALCTL_GLANCE_VENV",
                               Path.home() / ".cache" / "metalctl" / "glance"))


def glance_bin(name: str) -> Path:
    """A console script of the Glance venv (``glance-manage``, ``gunicorn``)."""
    return glance_venv_dir() / "bin" / name


def glance_installed() -> bool:
    """True when the Glance venv holds exactly the pinned requirements."""
    stamp = glance_venv_dir() / STAMP
    return (stamp.exists() and stamp.read_text() == "\n".join(GLANCE_REQUIREMENTS)
            and glance_bin("glance-manage").exists() and glance_bin("gunicorn").exists())


def ensure_glance() -> Path:
    """Create the Glance venv and install the pinned requirements unless already there.

    Raises:
        LabError: pip failed (its output's tail is in the message).
    """
    return _ensure(glance_venv_dir(), GLANCE_REQUIREMENTS, glance_installed(), "about 45 s")


def _pip(root: Path, requirements: list[str]) -> None:
    try:
        proc = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q",
                               "--disable-pip-version-check", *requirements],
                              capture_output=True, text=True, check=False,
                              timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise LabError(reason=f"pip install into {root} took over {PIP_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-1200:]
        raise LabError(reason=f"pip install into {root} failed (exit {proc.returncode}): {tail}")
