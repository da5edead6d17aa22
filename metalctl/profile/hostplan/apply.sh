#!/bin/sh
# metalctl-plan: the runtime part of a metalctl profile plan, applied at boot by
# metalctl-plan.service (before the network and libvirt) and by metalctl after install:
# hugepages per NUMA node and SR-IOV VFs per NIC, read from a data file. POSIX sh,
# idempotent. It prints one line per item, "changed|unchanged|error <what>", and
# "write <path> <value>" for every sysfs write (the journal shows what boot did).
#
#   METALCTL_PLAN_CONF  the data file (default /etc/metalctl/plan.conf):
#                         hugepages <numa node> <page size KiB> <count>
#                         vfs <PCI address or interface name> <count>
#   METALCTL_SYSFS      sysfs root (default /sys; the unit tests give a recorded tree)
#   METALCTL_MOUNTS     mount table (default /proc/mounts), METALCTL_HUGETLBFS where a
#                       hugetlbfs is mounted when none is (default /dev/hugepages)
#   METALCTL_VF_WAIT_S  how long a planned NIC may take to appear at boot (default 30)
set -u
SYS=${METALCTL_SYSFS:-/sys}
CONF=${METALCTL_PLAN_CONF:-/etc/metalctl/plan.conf}
MOUNTS=${METALCTL_MOUNTS:-/proc/mounts}
HUGETLBFS=${METALCTL_HUGETLBFS:-/dev/hugepages}
WAIT_S=${METALCTL_VF_WAIT_S:-30}
rc=0
pages=0

put() { # file value: one sysfs write, shown
  echo "write ${1#"$SYS"/} $2"
  { echo "$2" > "$1"; } 2>/dev/null
}

hugepages() { # node size_kib count
  f="$SYS/devices/system/node/node$1/hugepages/hugepages-$2kB/nr_hugepages"
  what="hugepages node$1 $2kB"
  if [ ! -e "$f" ]; then echo "error $what: no ${f#"$SYS"/}"; rc=1; return; fi
  have=$(cat "$f")
  if [ "$have" = "$3" ]; then echo "unchanged $what $3"; return; fi
  put "$f" "$3"
  got=$(cat "$f")
  if [ "$got" = "$3" ]; then
    echo "changed $what $have->$3"
  else
    # the kernel gives what it can find: fragmented memory gives fewer pages than asked
    echo "error $what: asked $3, the kernel gave $got (at boot, before guests, it finds more)"
    rc=1
  fi
}

vfs() { # pci_address_or_ifname count
  case "$1" in
    *:*) dev="$SYS/bus/pci/devices/$1" ;;
    *) dev="$SYS/class/net/$1/device" ;;
  esac
  f="$dev/sriov_numvfs"
  waited=0
  while [ ! -e "$f" ] && [ "$waited" -lt "$WAIT_S" ]; do  # its driver still probing
    sleep 1
    waited=$((waited + 1))
  done
  if [ ! -e "$f" ]; then echo "error vfs $1: no ${f#"$SYS"/} (no SR-IOV NIC there)"; rc=1; return; fi
  have=$(cat "$f")
  if [ "$have" = "$2" ]; then echo "unchanged vfs $1 $2"; return; fi
  if [ -e "$dev/sriov_totalvfs" ] && [ "$2" -gt "$(cat "$dev/sriov_totalvfs")" ]; then
    echo "error vfs $1: $2 asked, sriov_totalvfs is $(cat "$dev/sriov_totalvfs")"; rc=1; return
  fi
  # the kernel refuses N -> M with EBUSY: VFs go back to 0 first
  [ "$have" != 0 ] && put "$f" 0
  [ "$2" != 0 ] && put "$f" "$2"
  got=$(cat "$f")
  if [ "$got" = "$2" ]; then
    echo "changed vfs $1 $have->$2"
  else
    echo "error vfs $1: asked $2, sriov_numvfs reads $got"
    rc=1
  fi
}

if [ ! -r "$CONF" ]; then
  echo "error no plan file $CONF"
  exit 1
fi
while read -r kind a b c; do
  case "$kind" in
    hugepages) hugepages "$a" "$b" "$c"; [ "$c" != 0 ] && pages=1 ;;
    vfs) vfs "$a" "$b" ;;
    ''|'#'*) ;;
    *) echo "error $CONF: unknown line '$kind $a $b $c'"; rc=1 ;;
  esac
done < "$CONF"

# libvirt backs guests with hugepages through a mounted hugetlbfs (systemd mounts
# /dev/hugepages; a host without it needs one)
if [ "$pages" = 1 ]; then
  if grep -qs ' hugetlbfs ' "$MOUNTS"; then
    echo "unchanged hugetlbfs $(awk '$3 == "hugetlbfs" {print $2; exit}' "$MOUNTS")"
  elif mkdir -p "$HUGETLBFS" && mount -t hugetlbfs hugetlbfs "$HUGETLBFS"; then
    echo "changed hugetlbfs mounted at $HUGETLBFS"
  else
    echo "error hugetlbfs: mount at $HUGETLBFS failed"
    rc=1
  fi
fi
exit $rc
