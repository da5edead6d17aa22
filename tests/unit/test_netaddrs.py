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
