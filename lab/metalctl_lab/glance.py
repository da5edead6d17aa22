"""The lab's image service and network endpoint, beside its Nova: a real Glance and a
Neutron stand-in.

* **Glance 33.0.0** (the release of nova 34.0.0), from its own venv
  (:func:`metalctl_lab.nova_venv.ensure_glance`), under gunicorn as Glance 33 wants
  (its standalone ``glance-api`` only says "no longer supported"): a file store and
  sqlite in ``glance/``, no Keystone (``[paste_deploy] flavor`` empty: Glance's
  unauthenticated context is admin).
* **A Neutron stand-in** (:mod:`metalctl_lab.neutron_standin`): Nova 34 needs a Neutron
  endpoint even for a server with ``networks: none`` (without one, showing or deleting
  the server answers 500 and leaves it in ERROR; LAB.md). Why not the real
  ``neutron-server``: see docs/lab.md.

Both listen on the lab's address +4 (Glance 9292) and +5 (the stand-in 9696), or on its
one ``bind_address``. :func:`upload_canary` puts the canary image (a Debian cloud
kernel and a busybox initramfs, :mod:`metalctl_lab.canary_image`) into Glance as Nova
boots such a guest: an ``aki`` kernel, an ``ari`` ramdisk and a tiny ``ami`` disk whose
properties name them (``kernel_id``, ``ramdisk_id``, ``os_command_line``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import requests

from metalctl.errors import LabError
from metalctl_lab import canary_image, nova_venv, peers
from metalctl_lab.procs import http_ready, spawn, wait_ready

GLANCE_PORT, NEUTRON_PORT = 9292, 9696
#: what the canary's kernel is told (a serial console; ``quiet`` keeps TCG fast)
CANARY_CMDLINE = "console=ttyS0 quiet"


def _ini(sections: dict[str, dict[str, str]]) -> str:
    return "".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in opts.items()) + "\n"
                   for s, opts in sections.items())


def glance_conf(directory: Path, address: str) -> str:
    """glance-api.conf for a Glance whose every file is under ``directory/glance``."""
    d = directory / "glance"
    return _ini({
        "DEFAULT": {"bind_host": address, "bind_port": str(GLANCE_PORT),
                    "worker_self_reference_url": f"http://{address}:{GLANCE_PORT}",
                    "image_cache_dir": str(d / "cache"),
                    "node_staging_uri": f"file://{d / 'staging'}",
                    "enabled_import_methods": "[]", "show_image_direct_url": "false"},
        "database": {"connection": f"sqlite:///{d / 'glance.sqlite'}"},
        "glance_store": {"stores": "file", "default_store": "file",
                         "filesystem_store_datadir": str(d / "images")},
        "paste_deploy": {"flavor": "", "config_file": str(d / "glance-api-paste.ini")},
        "oslo_concurrency": {"lock_path": str(d / "locks")},
        # see open_policy(): no Keystone, so no roles and no scope
        "oslo_policy": {"policy_file": str(d / "policy.yaml"),
                        "policy_dirs": str(d / "policy.d"), "enforce_scope": "false",
                        "enforce_new_defaults": "false"},
        "task": {"work_dir": str(d / "tasks")},
        "os_glance_tasks_store": {"filesystem_store_datadir": str(d / "tasks")},
        "os_glance_staging_store": {"filesystem_store_datadir": str(d / "staging")},
    })


def nova_options(glance_url: str, neutron_url: str) -> dict[str, dict[str, str]]:
    """The ``[glance]`` and ``[neutron]`` options every Nova service of the lab takes
    (controller and computes): endpoints without Keystone."""
    return {"glance": {"endpoint_override": glance_url},
            "neutron": {"auth_type": "none", "endpoint_override": neutron_url}}


#: every policy rule Glance registers, as its venv lists them
LIST_RULES = "from glance import policies\nfor r in policies.list_rules(): print(r.name)\n"


def open_policy() -> str:
    """A policy file that allows every Glance rule: Glance 33's secure-RBAC defaults
    refuse the unauthenticated context (``get_images``: 403) even though it is admin,
    and the lab has no Keystone to give roles (measured: 403 on GET and POST)."""
    import subprocess  # noqa: PLC0415 - only the lab's start needs it

    proc = subprocess.run([str(nova_venv.glance_bin("python")), "-c", LIST_RULES],
                          capture_output=True, text=True, check=False, timeout=120)
    names = proc.stdout.split()
    if proc.returncode != 0 or not names:
        raise LabError(reason=f"listing Glance's policy rules failed: {proc.stderr[-300:]}")
    return "".join(f'"{n}": ""\n' for n in names)


def prepare(directory: Path, address: str) -> None:
    """Write Glance's configuration and paste file; start nothing."""
    d = directory / "glance"
    for sub in ("images", "cache", "staging", "locks", "tasks"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "glance-api.conf").write_text(glance_conf(directory, address))
    (d / "policy.yaml").write_text(open_policy())
    shutil.copy2(nova_venv.glance_venv_dir() / "etc" / "glance" / "glance-api-paste.ini",
                 d / "glance-api-paste.ini")


def start(directory: Path, address: str, neutron_address: str, pids: dict[str, int],
          log: Any) -> None:
    """Sync Glance's database and start Glance and the Neutron stand-in (their pids go
    into ``pids``: the lab's :func:`~metalctl_lab.nova.down` stops them).

    Raises:
        LabError: the database sync failed (names its output).
    """
    import subprocess  # noqa: PLC0415 - only the lab's start needs it

    d = directory / "glance"
    conf = d / "glance-api.conf"
    proc = subprocess.run([str(nova_venv.glance_bin("glance-manage")), "--config-file",
                           str(conf), "db_sync"], capture_output=True, text=True,
                          check=False, timeout=300)
    if proc.returncode != 0:
        raise LabError(reason=f"glance-manage db_sync failed: {proc.stderr.strip()[-400:]}")
    pids["glance"] = spawn([str(nova_venv.glance_bin("gunicorn")), "--no-control-socket",
                            "--workers", "1", "--bind", f"{address}:{GLANCE_PORT}",
                            "--chdir", str(d), "--timeout", "120",
                            "glance.wsgi.api:application"], log("glance"),
                           {"OS_GLANCE_CONFIG_DIR": str(d)})
    pids["neutron-standin"] = spawn([peers.metalctl_python(), "-m",
                                     "metalctl_lab.neutron_standin", neutron_address,
                                     str(NEUTRON_PORT)], log("neutron-standin"))


def wait(address: str, neutron_address: str, pids: dict[str, int], log: Any,
         timeout_s: float) -> None:
    """Wait until Glance and the stand-in answer.

    Raises:
        LabError: one did not; names its log.
    """
    for name, url in (("glance", f"http://{address}:{GLANCE_PORT}/v2/images"),
                      ("neutron-standin",
                       f"http://{neutron_address}:{NEUTRON_PORT}/v2.0/ports")):
        wait_ready(name, http_ready(url), pids[name], log(name), timeout_s)


def _image(glance_url: str, name: str, fmt: str, path: Path | None,
           properties: dict[str, str]) -> str:
    body = {"name": name, "disk_format": fmt, "container_format": fmt,
            "visibility": "public", **properties}
    resp = requests.post(f"{glance_url}/v2/images", json=body, timeout=30)
    if resp.status_code != 201:
        raise LabError(reason=f"Glance refused image {name}: HTTP {resp.status_code}: "
                              f"{resp.text[:300]}")
    image_id = resp.json()["id"]
    if path is not None:
        with path.open("rb") as f:
            up = requests.put(f"{glance_url}/v2/images/{image_id}/file", data=f, timeout=120,
                              headers={"Content-Type": "application/octet-stream"})
        if up.status_code != 204:
            raise LabError(reason=f"uploading {name} to Glance: HTTP {up.status_code}: "
                                  f"{up.text[:300]}")
    return image_id


def upload_canary(glance_url: str) -> str:
    """Build (once, cached) and upload the canary image; returns the bootable image's id.

    Raises:
        LabError: the build or an upload failed.
    """
    files = canary_image.ensure()
    kernel = _image(glance_url, "metalctl-canary-kernel", "aki", files.kernel, {})
    ramdisk = _image(glance_url, "metalctl-canary-initramfs", "ari", files.initrd, {})
    return _image(glance_url, "metalctl-canary", "ami", files.disk,
                  {"kernel_id": kernel, "ramdisk_id": ramdisk,
                   "os_command_line": CANARY_CMDLINE})
