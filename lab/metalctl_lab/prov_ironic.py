"""The lab Ironic's side of the provisioning network: its ``http_root`` served over HTTP
and the ``ipxe``/``anaconda`` settings, so Ironic can really deploy lab machines.

Ironic writes its iPXE scripts, the installer kernel and ramdisk, ``ks.cfg`` and stage2
under ``http_root``; machines fetch them from ``http_url`` and heartbeat to the API at
``[service_catalog] endpoint_override``. Both are on the host side of the provisioning
network (:mod:`metalctl_lab.provnet`), which is where the lab's Ironic listens when the
rack has one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from metalctl_lab.ironic_conf import AnacondaConf
from metalctl_lab.procs import spawn

HTTP_ROOT_PORT = 8089


def anaconda(host_address: str, directory: Path, api_port: int,
             http_port: int = HTTP_ROOT_PORT) -> AnacondaConf:
    """Ironic's anaconda settings for a provisioning network whose host side is
    ``host_address``; ``http_root`` lives in ``directory``."""
    return AnacondaConf(http_url=f"http://{host_address}:{http_port}",
                        http_root=directory / "httpboot",
                        api_url=f"http://{host_address}:{api_port}")


def start_http_root(conf: AnacondaConf, host_address: str, log: Path,
                    http_port: int = HTTP_ROOT_PORT) -> int:
    """Serve ``http_root`` read-only on the provisioning network; return the pid.

    Python's own static server: it answers HEAD (Ironic validates URLs with it) and GET,
    on one address only.
    """
    conf.http_root.mkdir(parents=True, exist_ok=True)
    return spawn([sys.executable, "-m", "http.server", "--bind", host_address,
                  "--directory", str(conf.http_root), str(http_port)], log)
