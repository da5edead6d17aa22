"""What the lab-rack tests share: a fast BMC budget, discovery of one address, and a
``metalctl run`` of a rack file in a subprocess with the lab's environment.

A helper module: test modules import from here, never from each other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from metalctl import discover
from metalctl.budget import Budget
from metalctl.netaddrs import parse_targets

FAST = Budget(connect_timeout_s=1, read_timeout_s=10)


def records(lab, creds, address):
    opts = discover.DiscoverOptions(verify=lab.ca_bundle, budget=FAST)
    return [r for r in discover.discover(parse_targets([address]), creds, opts)
            if r.status.value == "ok"]


def env_of(lab, tmp_path) -> dict[str, str]:
    return {**os.environ, **lab.env(), "METALCTL_STORE": str(tmp_path / "store.db"),
            "COLUMNS": "200"}


def rack_file(tmp_path: Path, lab, **over) -> Path:
    data = {"name": "r25", "bmc": {"ranges": lab.ranges, "credentials": ["lab"]},
            "ironic": {"url": lab.ironic_url},
            "profiles": {"default": "compute-general", "bios": "skip",
                         "rules": [{"when": {"protocol": "ipmi"}, "profile": "hpc"}]},
            "until": "profile"}
    data.update(over)
    path = tmp_path / "rack.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def metalctl(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metalctl", *args], capture_output=True,
                          text=True, env=env, timeout=600, check=False)
