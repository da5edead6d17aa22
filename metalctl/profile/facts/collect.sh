#!/bin/sh
# metalctl in-band fact collector: read-only, POSIX sh, one round trip.
# Prints sections "### <name> [arg]" followed by raw content; metalctl parses them.
# Needs only coreutils, util-linux (lscpu) and /sys; no Python on the host.
export LC_ALL=C
echo "### lscpu"
lscpu -J -e=CPU,NODE,SOCKET,CORE,ONLINE 2>/dev/null || echo '{"cpus": []}'
echo "### cpuinfo"
grep -m1 -E '^vendor_id' /proc/cpuinfo
grep -m1 -E '^model name' /proc/cpuinfo
grep -m1 -E '^flags' /proc/cpuinfo
echo "### cmdline"
cat /proc/cmdline
echo "### isolated"
cat /sys/devices/system/cpu/isolated 2>/dev/null
for n in /sys/devices/system/node/node[0-9]*; do
  [ -d "$n" ] || continue
  echo "### node ${n##*node}"
  grep -E 'MemTotal' "$n/meminfo"
  for h in "$n"/hugepages/hugepages-*kB; do
    [ -d "$h" ] || continue
    size=${h##*hugepages-}
    echo "hugepages ${size%kB} $(cat "$h/nr_hugepages")"
  done
done
for d in /sys/class/net/*; do
  [ -e "$d/device" ] || continue          # physical ports only
  [ -e "$d/device/physfn" ] && continue   # skip VFs themselves
  echo "### nic ${d##*/}"
  dev=$(readlink -f "$d/device")
  echo "pci_address ${dev##*/}"
  echo "mac $(cat "$d/address" 2>/dev/null)"
  echo "numa_node $(cat "$d/device/numa_node" 2>/dev/null)"
  echo "vendor $(cat "$d/device/vendor" 2>/dev/null)"
  echo "device $(cat "$d/device/device" 2>/dev/null)"
  echo "vf_device $(cat "$d/device/sriov_vf_device" 2>/dev/null)"
  echo "totalvfs $(cat "$d/device/sriov_totalvfs" 2>/dev/null)"
  echo "numvfs $(cat "$d/device/sriov_numvfs" 2>/dev/null)"
  echo "speed $(cat "$d/speed" 2>/dev/null)"
  drv=$(readlink "$d/device/driver" 2>/dev/null)
  echo "driver ${drv##*/}"
done
echo "### end"
