import pytest

from metalctl.errors import InputError
from metalctl.netaddrs import parse_target, parse_targets


def test_cidr_excludes_network_and_broadcast():
    t = parse_target("10.1.0.0/30")
    assert list(t) == ["10.1.0.1", "10.1.0.2"]


def test_short_range_and_port_and_scheme():
    t = parse_target("https://10.1.1.10-12:8443")
    assert list(t) == ["10.1.1.10", "10.1.1.11", "10.1.1.12"]
    assert (t.port, t.scheme) == (8443, "https")


def test_full_range_keeps_both_ends():
    assert list(parse_target("10.1.1.254-10.1.2.1")) == [
        "10.1.1.254", "10.1.1.255", "10.1.2.0", "10.1.2.1"]


def test_ipv6_with_port_and_hostname():
    assert parse_target("[2001:db8::5]:623").port == 623
    t = parse_target("bmc-r01u12.example.net")
    assert list(t) == ["bmc-r01u12.example.net"]


@pytest.mark.parametrize("bad", ["10.1.0.0/33", "10.1.1.300", "10.1.1.20-10", "ftp://10.0.0.1",
                                 "10.0.0.1:99999", "not a host!"])
def test_malformed_targets_name_the_argument(bad):
    with pytest.raises(InputError) as exc:
        parse_targets(["10.9.9.9", bad])
    assert exc.value.path == "targets[1]"
    assert bad in str(exc.value)


def test_overlapping_cidrs_rejected_with_both_indices():
    with pytest.raises(InputError) as exc:
        parse_targets(["10.1.0.0/24", "10.1.0.128/25"])
    assert "targets[1]" in str(exc.value)
    assert "targets[0]" in str(exc.value)


def test_same_addresses_on_other_ports_do_not_overlap():
    assert len(parse_targets(["127.0.0.1:8001", "127.0.0.1:8002"])) == 2


def test_huge_scan_needs_explicit_limit():
    with pytest.raises(InputError, match="exceed"):
        parse_targets(["10.0.0.0/8"])


def test_scheme_prefix_keeps_the_whole_range():
    t = parse_target("ipmi://127.0.0.1-12")
    assert list(t) == [f"127.0.0.{i}" for i in range(1, 13)]
    assert t.size == 12
    assert t.scheme == "ipmi"
    net = parse_target("ipmi://10.0.0.0/30")
    assert list(net) == ["10.0.0.1", "10.0.0.2"]
    assert net.size == 2


@pytest.mark.parametrize("bad", ["[fd00::1", "[fd00::1]x", "[fd00::1]:", "[bmc.example]:623",
                                 "fd00::1]", "10.0.0.1:", "ipmi://"])
def test_malformed_brackets_and_ports_refused(bad):
    with pytest.raises(InputError) as exc:
        parse_targets([bad])
    assert exc.value.path == "targets[0]"


@pytest.mark.parametrize(("a", "b"), [("bmc.example", "BMC.Example"),
                                      ("10.0.0.1", "::ffff:10.0.0.1"),
                                      ("10.0.0.0/30", "[::ffff:10.0.0.2]"),
                                      ("10.0.0.0/24", "10.0.0.200-10.0.1.5")])
def test_overlap_is_case_insensitive_and_sees_mapped_ipv4(a, b):
    with pytest.raises(InputError, match=r"overlaps targets\[0\]"):
        parse_targets([a, b])


def test_overlap_check_never_intersects_pairwise(monkeypatch):
    """2,000 disjoint targets parse with no IPSet intersection at all (one sort + sweep);
    the quadratic check made 2,000 * 1,999 / 2 intersections."""
    import netaddr

    calls = {"and": 0}
    real_and = netaddr.IPSet.__and__

    def counting_and(self, other):
        calls["and"] += 1
        return real_and(self, other)

    monkeypatch.setattr(netaddr.IPSet, "__and__", counting_and)
    monkeypatch.setattr(netaddr.IPSet, "intersection", counting_and)
    texts = [f"10.{i // 250}.{i % 250}.1" for i in range(2000)] + [f"bmc-{i}.example"
                                                                   for i in range(500)]
    targets = parse_targets(texts)
    assert len(targets) == 2500
    assert calls["and"] == 0
    with pytest.raises(InputError, match=r"targets\[2500\].*overlaps targets\[1999\]"):
        parse_targets([*texts, "10.7.249.1"])
