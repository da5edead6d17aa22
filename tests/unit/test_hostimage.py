"""Image layer keys cover the whole chain below a layer (issue 21: a stale ``metal``).

Nothing is debootstrapped here: builds are stubbed to write the directory and its stamp,
which is all the cache looks at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from metalctl.errors import LabError
from metalctl_lab import hostimage


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Path]]]:
    """A cache in tmp_path with a built base; returns the builds done (name, lowers)."""
    monkeypatch.setenv("METALCTL_CACHE", str(tmp_path))
    builds: list[tuple[str, list[Path]]] = []

    def build(name: str, packages: str, layer: Path, lowers: list[Path]) -> None:
        part = Path(f"{layer}.part")
        part.mkdir(parents=True)
        hostimage._publish(part, layer, packages)
        builds.append((name, lowers))

    monkeypatch.setattr(hostimage, "_build_layer", build)
    rebuild_base()
    return builds


def rebuild_base() -> None:
    base = hostimage.base_dir()
    base.mkdir(parents=True, exist_ok=True)
    hostimage._write_stamp(base, "test base")  # a new build id, as a debootstrap gives


def test_the_metal_chain_is_the_whole_stack() -> None:
    assert hostimage.chain("metal") == ["metal", "systemd", "kvm"]
    assert hostimage.chain("kvm") == ["kvm"]


def test_a_layer_is_built_on_every_layer_below_it(cache: list) -> None:
    hostimage.ensure_layer("metal")
    assert [n for n, _ in cache] == ["kvm", "systemd", "metal"]
    lowers = dict(cache)["metal"]
    assert lowers == [hostimage.layer_dir("systemd"), hostimage.layer_dir("kvm"),
                      hostimage.base_dir()]
    assert hostimage.lowerdirs("metal") == [hostimage.layer_dir("metal"), *lowers]
    hostimage.ensure_layer("metal")
    assert len(cache) == 3  # built once


def test_a_rebuilt_base_rebuilds_every_layer(cache: list) -> None:
    hostimage.ensure_layer("metal")
    before = {n: hostimage.layer_key(n) for n in ("kvm", "systemd", "metal")}
    rebuild_base()
    hostimage.ensure_layer("metal")
    after = {n: hostimage.layer_key(n) for n in ("kvm", "systemd", "metal")}
    assert all(after[n] != before[n] for n in after)
    assert [n for n, _ in cache[3:]] == ["kvm", "systemd", "metal"]


def test_changed_packages_below_change_the_key_above(cache: list,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    hostimage.ensure_layer("metal")
    key = hostimage.layer_key("metal")
    monkeypatch.setitem(hostimage.LAYERS, "kvm", (hostimage.KVM_PACKAGES + " x", ()))
    with pytest.raises(LabError, match="not built"):
        hostimage.layer_key("metal")  # the new kvm is not built: nothing above it exists
    hostimage.ensure_layer("metal")
    assert hostimage.layer_key("metal") != key
    assert [n for n, _ in cache[3:]] == ["kvm", "systemd", "metal"]


def test_an_unfinished_build_does_not_count(cache: list) -> None:
    layer = hostimage.ensure_layer("kvm")
    hostimage._stamp_path(layer).unlink()  # a builder died before publishing
    assert hostimage.build_id(layer) is None
    hostimage.ensure_layer("kvm")
    assert len(cache) == 2
    assert hostimage.build_id(layer)
