"""The lab's stand-in installer: a Debian kernel, a busybox initramfs and its stage 2.

Anaconda is in neither Debian nor PyPI, so the lab installs its machines with a stand-in
that does what anaconda does that the pipeline can see (docs/lab.md, "The stand-in
installer"). :func:`ensure` builds, once, into ``$METALCTL_CACHE/installer`` (default
``~/.cache/metalctl/installer``) one directory a boot service can serve as ``files_dir``
(``files-<digest of every input>``):

* ``vmlinuz``: Debian's cloud kernel, from ``apt-get download`` + ``dpkg-deb -x`` (never
  installed into this machine's /boot);
* ``initrd.img``: stage 1, static busybox, the virtio modules and ``standin/init``;
* ``stage2.img``: what ``inst.stage2`` fetches, a tar.gz of the installer proper: the
  kickstart interpreter (``standin/*.sh``, ``*.awk``) and the real curl, sfdisk, mke2fs,
  blkid, extlinux and gzip with their shared libraries;
* ``liveimg.tar.gz``: the OS to install, the lab host image (base + kvm + metal layers of
  :mod:`metalctl_lab.hostimage`) without host keys or machine id, DHCP by systemd-networkd
  with the MAC as client id.

A directory is built only when its inputs change; the downloaded kernel package is kept
in ``debs/``.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from metalctl.errors import InputError, LabError
from metalctl_lab import liveimg

LOG = logging.getLogger(__name__)

STANDIN = Path(__file__).parent / "standin"
KERNEL_PACKAGE = "linux-image-cloud-amd64"
#: drivers a QEMU/libvirt machine needs before the disk and NIC appear (ext4 and
#: AF_PACKET are built into the cloud kernel, which has no AHCI/SATA or e1000 at all:
#: lab machines use virtio); dependencies are added from modinfo
MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "sd_mod")
#: the real tools of stage 2 (busybox has no blkid worth the name, no sfdisk, no extlinux)
TOOLS = ("/usr/bin/curl", "/usr/sbin/sfdisk", "/usr/sbin/mke2fs", "/usr/sbin/blkid",
         "/usr/bin/extlinux", "/usr/bin/gzip")
DATA = ("/etc/mke2fs.conf", "/etc/ssl/certs/ca-certificates.crt")
MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
STAGE1_FILES = ("init", "log.sh", "udhcpc.script")
STAGE2_FILES = ("anaconda", "commands.sh", "scripts.sh", "disks.sh", "target.sh",
                "ks-split.awk", "ks-words.awk")


@dataclass(frozen=True)
class InstallerFiles:
    """The served directory and its four files (names fixed, relative to ``directory``)."""

    directory: Path
    kernel: Path
    initrd: Path
    stage2: Path
    liveimg: Path
    kernel_version: str


def cache_dir() -> Path:
    """Where the installer is built (``$METALCTL_CACHE/installer``)."""
    root = Path(os.environ.get("METALCTL_CACHE", Path.home() / ".cache" / "metalctl"))
    return root / "installer"


def _run(argv: list[str], what: str, *, cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(reason=f"{what} failed (exit {proc.returncode}): "
                              f"{proc.stderr.strip()[-400:]}")
    return proc.stdout


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def kernel_deb(debs: Path) -> Path:
    """The cloud kernel package in ``debs`` (downloaded once with ``apt-get download``)."""
    depends = subprocess.run(["apt-cache", "depends", KERNEL_PACKAGE], capture_output=True,
                             text=True, check=False).stdout
    names = re.findall(r"Depends: (linux-image-[\w.+-]+)", depends)
    if not names:
        # a machine whose package lists were cleaned (container images are): read them
        # once, as scripts/setup.sh does before any apt-get install
        LOG.info("installer: apt-get update (no package lists)")
        _run(["apt-get", "update", "-qq"], "apt-get update")
        depends = _run(["apt-cache", "depends", KERNEL_PACKAGE], "apt-cache depends")
        names = re.findall(r"Depends: (linux-image-[\w.+-]+)", depends)
    if not names:
        raise LabError(reason=f"apt-cache knows no kernel behind {KERNEL_PACKAGE}")
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{names[0]}_*.deb"))
    if not found:
        LOG.info("installer: apt-get download %s", names[0])
        _run(["apt-get", "download", names[0]], "apt-get download", cwd=debs)
        found = sorted(debs.glob(f"{names[0]}_*.deb"))
    if not found:
        raise LabError(reason=f"apt-get download {names[0]} left no .deb in {debs}")
    return found[-1]


def module_depends(ko: bytes) -> list[str]:
    """The ``depends=`` of a kernel module's .modinfo section (what modinfo -F prints)."""
    m = re.search(rb"(?:^|\0)depends=([\w,-]*)\0", ko)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def module_order(wanted: tuple[str, ...], find: dict[str, Path]) -> list[str]:
    """``wanted`` modules and their dependencies, each after what it needs; modules the
    kernel does not have (built in or absent) are left out."""
    order: list[str] = []

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in order or name not in find:
            return
        for dep in module_depends(find[name].read_bytes()):
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def _extract_kernel(deb: Path, work: Path) -> tuple[str, Path, Path]:
    _run(["dpkg-deb", "-x", str(deb), str(work)], "dpkg-deb -x")
    vmlinuz = next((work / "boot").glob("vmlinuz-*"))
    version = vmlinuz.name.removeprefix("vmlinuz-")
    return version, vmlinuz, work / "lib" / "modules" / version


def _cpio_gz(tree: Path, out: Path) -> None:
    names = _run(["find", ".", "-mindepth", "1"], "find", cwd=tree)
    proc = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=tree,
                          input=names.encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise LabError(reason=f"cpio failed: {proc.stderr.decode()[-300:]}")
    part = out.with_name(out.name + ".part")
    with gzip.open(part, "wb", compresslevel=6) as f:
        f.write(proc.stdout)
    part.replace(out)  # never a half-written file where a server may be reading


def _build_initrd(out: Path, busybox: Path, modules_dir: Path) -> None:
    find = {p.name.removesuffix(".ko").replace("-", "_"): p
            for p in modules_dir.rglob("*.ko")}
    order = module_order(MODULES, find)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        root = Path(tmp)
        for d in ("bin", "lib/standin", "lib/modules", "etc", "tmp", "proc", "sys", "dev"):
            (root / d).mkdir(parents=True)
        shutil.copy2(busybox, root / "bin" / "busybox")
        (root / "bin" / "sh").symlink_to("busybox")
        shutil.copy2(STANDIN / "init", root / "init")
        for name in STAGE1_FILES[1:]:
            shutil.copy2(STANDIN / name, root / "lib" / "standin" / name)
        for name in order:
            shutil.copy2(find[name], root / "lib" / "modules" / f"{name}.ko")
        (root / "lib" / "modules" / "load.list").write_text("".join(f"{m}\n" for m in order))
        for p in (root / "init", root / "lib" / "standin" / "udhcpc.script"):
            p.chmod(0o755)
        _cpio_gz(root, out)


def shared_libraries(binary: str) -> list[str]:
    """The absolute paths ldd resolves for ``binary``, its dynamic loader included."""
    out = _run(["ldd", binary], f"ldd {binary}")
    return [m.group(1) for m in re.finditer(r"(?:=> )?(/\S+) \(0x", out)]


def _copy_keep_path(src: str, root: Path) -> None:
    dest = root / src.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(src), dest)  # the file itself, not a usrmerge link


def _build_stage2(out: Path) -> None:
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        root = Path(tmp)
        lib = root / "usr" / "lib" / "standin"
        lib.mkdir(parents=True)
        for name in STAGE2_FILES:
            shutil.copy2(STANDIN / name, lib / name)
        (lib / "anaconda").chmod(0o755)
        shutil.copy2(MBR, lib / "mbr.bin")
        for tool in TOOLS:
            _copy_keep_path(tool, root)
            for so in shared_libraries(tool):
                _copy_keep_path(so, root)
        (root / "usr" / "sbin" / "mkfs.ext4").symlink_to("mke2fs")
        for data in DATA:
            _copy_keep_path(data, root)
        part = out.with_name(out.name + ".part")
        _run(["tar", "-czf", str(part), "--owner=0", "--group=0", "-C", str(root), "."],
             "tar stage2")
        part.replace(out)


def _inputs(names: tuple[str, ...], *paths: Path) -> str:
    return _digest(*(STANDIN.joinpath(n).read_bytes() for n in names),
                   *(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths))


def _check_host() -> Path:
    busybox = shutil.which("busybox")
    missing = [t for t in (busybox, *TOOLS, str(MBR), shutil.which("cpio")) if
               not t or not Path(t).exists()]
    if missing or not busybox:
        raise LabError(reason=f"the installer's tools are missing ({missing}): "
                              "run scripts/setup.sh")
    return Path(busybox)


def check_kickstart(text: str, label: str = "kickstart") -> dict[str, str]:
    """Run the stand-in's own parser (busybox sh, parse-only) over a kickstart.

    Nothing is executed but the parser: no %pre, %post or %onerror, no disk, no network.

    Returns:
        What the installer would do: ``liveimg``, ``finish``, ``append``, ``part``...
        (the last value of repeated keys).

    Raises:
        InputError: the installer refuses the kickstart (with its line when the
            refusal names one).
    """
    busybox = shutil.which("busybox")
    if not busybox:
        raise LabError(reason="busybox missing: run scripts/setup.sh")
    with tempfile.TemporaryDirectory() as tmp:
        ks = Path(tmp) / "ks.cfg"
        ks.write_text(text)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STANDIN_CHECK": str(ks),
               "STANDIN_LIB": str(STANDIN), "STANDIN_LOG": str(STANDIN / "log.sh"),
               "STANDIN_KSDIR": str(Path(tmp) / "ks"), "ANALOG": str(Path(tmp) / "log")}
        proc = subprocess.run([busybox, "sh", str(STANDIN / "anaconda")], env=env,
                              capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        error = next((line.split("ERROR: ", 1)[1] for line in proc.stderr.splitlines()
                      if "ERROR: " in line), proc.stderr.strip()[-300:])
        m = re.match(r"kickstart line (\d+): (.*)", error)
        raise InputError(label, "stand-in installer", m.group(2) if m else error,
                         line=int(m.group(1)) if m else None)
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def _files(directory: Path) -> InstallerFiles:
    return InstallerFiles(directory=directory, kernel=directory / "vmlinuz",
                          initrd=directory / "initrd.img", stage2=directory / "stage2.img",
                          liveimg=directory / "liveimg.tar.gz",
                          kernel_version=(directory / "kernel-version").read_text())


def _build_files(tmp: Path, deb: Path, busybox: Path, image: Path) -> None:
    with tempfile.TemporaryDirectory(dir=tmp.parent) as work:
        version, kernel, modules = _extract_kernel(deb, Path(work))
        shutil.copy2(kernel, tmp / "vmlinuz")
        _build_initrd(tmp / "initrd.img", busybox, modules)
    (tmp / "kernel-version").write_text(version)
    _build_stage2(tmp / "stage2.img")
    try:
        os.link(image, tmp / "liveimg.tar.gz")  # 167 MB: shared, never copied
    except OSError:
        shutil.copy2(image, tmp / "liveimg.tar.gz")


def ensure(cache: Path | None = None) -> InstallerFiles:
    """Build what is missing, and return the served directory's files.

    The directory is named after a digest of every input (``files-<digest>``) and
    appears complete or not at all, so worktrees with different installer sources
    sharing one cache never overwrite each other's files while a machine fetches them.

    Args:
        cache: the build directory (``cache_dir()`` when None); ``debs/`` in it keeps the
            kernel package, ``liveimg-<digest>.tar.gz`` the OS image.

    Raises:
        LabError: a tool or package is missing, or a build step failed.
    """
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    busybox = _check_host()
    deb = kernel_deb(cache / "debs")
    image = liveimg.ensure(cache)
    digest = _digest(_inputs(STAGE1_FILES, busybox, deb), ",".join(MODULES),
                     _inputs(STAGE2_FILES, MBR, *(Path(t) for t in TOOLS)), image.name)
    directory = cache / f"files-{digest[:16]}"
    if (directory / "kernel-version").exists():
        return _files(directory)
    LOG.info("installer: building %s (kernel %s)", directory.name, deb.name)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=cache))
    try:
        _build_files(tmp, deb, busybox, image)
        tmp.chmod(0o755)
        try:
            tmp.rename(directory)
        except OSError:  # built meanwhile by another process: theirs is the same
            LOG.info("installer: %s appeared while building; using it", directory.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _files(directory)


__all__ = ["InstallerFiles", "cache_dir", "check_kickstart", "ensure"]
