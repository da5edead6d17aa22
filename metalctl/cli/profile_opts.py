"""Options and readers the ``metalctl profile`` actions share."""

from __future__ import annotations

import argparse
from pathlib import Path

from metalctl.profile import bios
from metalctl.profile.library import ProfileLibrary


def add_profile_dirs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile-dir", type=Path, action="append", default=[],
                   help="extra directory of profiles (searched before the shipped ones); "
                        "its bios/ subfolder may hold vendor maps")


def library(args: argparse.Namespace) -> ProfileLibrary:
    return ProfileLibrary(list(args.profile_dir))


def bios_library(args: argparse.Namespace) -> bios.BiosLibrary:
    return bios.BiosLibrary([d / "bios" for d in args.profile_dir])
