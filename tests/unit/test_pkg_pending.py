"""PKG-007's apt probe on a real apt (APT_CONFIG pointing at a throw-away root): package
lists stored compressed, as Debian 12 images keep them (``*_Packages.lz4``), and a
pending security update; no lists at all is "unknown", never 0."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from metalctl.rules import catalogue

RULE = next(r for r in catalogue.load() if r.id == "PKG-007")
pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None, reason="no apt-get")
RELEASE = ("Origin: Debian\nLabel: Debian-Security\nSuite: stable-security\n"
           "Codename: bookworm-security\nDate: Sat, 05 Dec 2026 00:00:00 UTC\n"
           "Architectures: amd64\nComponents: main\n")
PACKAGES = ("Package: hello\nVersion: 1.1\nArchitecture: amd64\nMaintainer: x <x@example>\n"
            "Filename: pool/h/hello_1.1_amd64.deb\nSize: 100\nDescription: test\n\n")
STATUS = ("Package: hello\nStatus: install ok installed\nMaintainer: x <x@example>\n"
          "Architecture: amd64\nVersion: 1.0\nDescription: test\n\n")
COMPRESS = {"lz4": ["lz4", "-q"], "gz": ["gzip", "-c"], "xz": ["xz", "-c"], "": ["cat"]}


def apt_root(tmp: Path, compression: str | None) -> dict[str, str]:
    for d in ("etc/sources.list.d", "etc/apt.conf.d", "etc/preferences.d", "lists/partial",
              "cache/archives/partial"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    (tmp / "etc/sources.list.d/site.sources").write_text(
        "Types: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\nTrusted: yes\n")
    (tmp / "status").write_text(STATUS)
    if compression is not None:
        base = "deb.example_debian-security_dists_bookworm-security"
        (tmp / "lists" / f"{base}_InRelease").write_text(RELEASE)
        name = f"{base}_main_binary-amd64_Packages" + (f".{compression}" if compression else "")
        data = subprocess.run(COMPRESS[compression], input=PACKAGES.encode(),
                              capture_output=True, check=True).stdout
        (tmp / "lists" / name).write_bytes(data)
    conf = tmp / "apt.conf"
    conf.write_text(f'Dir "{tmp}/";\nDir::Etc "{tmp}/etc/";\nDir::State::Lists "{tmp}/lists/";\n'
                    f'Dir::State::status "{tmp}/status";\nDir::Cache "{tmp}/cache/";\n'
                    'APT::Architecture "amd64";\nAPT::Architectures "amd64";\n')
    return {"APT_CONFIG": str(conf), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


@pytest.mark.parametrize("compression", ["lz4", "gz", "xz", ""])
def test_pending_security_update_counted_whatever_the_compression(tmp_path, compression):
    if COMPRESS[compression][0] != "cat" and shutil.which(COMPRESS[compression][0]) is None:
        pytest.skip(f"no {COMPRESS[compression][0]}")
    env = apt_root(tmp_path, compression)
    out = subprocess.run(["sh", "-c", RULE.check["probe_apt"]], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "1", out
    assert not list((tmp_path / "cache").glob("*.bin")), "the probe wrote apt's cache"
    assert not list(tmp_path.glob("var/log/**/*.*")), "the probe wrote apt's logs"


def test_no_lists_is_unknown_not_zero(tmp_path):
    env = apt_root(tmp_path, None)
    out = subprocess.run(["sh", "-c", RULE.check["probe_apt"]], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip().startswith("unknown: apt has no package lists"), out
