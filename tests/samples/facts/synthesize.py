"""Writes the recorded-facts samples in the exact format of metalctl/facts/collect.sh.

They model real machines (layouts as Linux reports them on these platforms) rather
than copying any one host's output; re-run to regenerate after changing the collector.
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
FLAGS_INTEL = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush "
               "dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc "
               "vmx smx est tm2 ssse3 fma cx16 pcid dca sse4_1 sse4_2 x2apic movbe popcnt aes "
               "xsave avx f16c rdrand lahf_lm abm 3dnowprefetch avx2 avx512f avx512dq")


def lscpu(rows):
    return json.dumps({"cpus": [{"cpu": c, "node": n, "socket": s, "core": k, "online": True}
                                for c, n, s, k in rows]}, indent=3)


def nic(name, pci, mac, numa, vendor, device, vf, total, speed, driver):
    return "\n".join([f"### nic {name}", f"pci_address {pci}", f"mac {mac}", f"numa_node {numa}",
                      f"vendor 0x{vendor}", f"device 0x{device}", f"vf_device {vf}",
                      f"totalvfs {total}", "numvfs " + ("0" if total != "" else ""),
                      f"speed {speed}", f"driver {driver}"])


def dual_socket() -> str:
    # Dell PowerEdge R750-style: 2 x Xeon Gold 6342-class (24 cores, HT), BIOS numbers
    # logical CPUs round-robin across sockets (cpu 0 socket 0, cpu 1 socket 1, ...),
    # core ids are sparse as on Ice Lake SP.
    core_ids = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22,
                24, 25, 26]
    rows = []
    for thread in range(2):
        for i in range(48):
            socket = i % 2
            rows.append((thread * 48 + i, socket, socket, core_ids[i // 2]))
    parts = ["### lscpu", lscpu(rows), "### cpuinfo", "vendor_id\t: GenuineIntel",
             "model name\t: Intel(R) Xeon(R) Gold 6342 CPU @ 2.80GHz", "flags\t\t: " + FLAGS_INTEL,
             "### cmdline",
             "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0-427.13.1.el9_4.x86_64 "
             "root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M "
             "rd.lvm.lv=rhel/root",
             "### isolated", "",
             "### node 0", "Node 0 MemTotal:       263656840 kB",
             "hugepages 1048576 0", "hugepages 2048 0",
             "### node 1", "Node 1 MemTotal:       264189136 kB",
             "hugepages 1048576 0", "hugepages 2048 0",
             nic("eno8303", "0000:04:00.0", "b0:7b:25:de:1a:10", 0, "14e4", "165f", "", "", 1000,
                 "tg3"),
             nic("eno8403", "0000:04:00.1", "b0:7b:25:de:1a:11", 0, "14e4", "165f", "", "", -1,
                 "tg3"),
             nic("ens1f0", "0000:31:00.0", "b4:96:91:a5:3c:20", 0, "8086", "159b", "0x1889", 128,
                 25000, "ice"),
             nic("ens1f1", "0000:31:00.1", "b4:96:91:a5:3c:21", 0, "8086", "159b", "0x1889", 128,
                 25000, "ice"),
             nic("ens6f0np0", "0000:98:00.0", "0c:42:a1:7e:55:e0", 1, "15b3", "101f", "0x101e", 8,
                 25000, "mlx5_core"),
             nic("ens6f1np1", "0000:98:00.1", "0c:42:a1:7e:55:e1", 1, "15b3", "101f", "0x101e", 8,
                 25000, "mlx5_core"),
             "### end"]
    return "\n".join(parts) + "\n"


def edge() -> str:
    # 1-socket edge box (Xeon D-2100-class, 12 cores HT, 64 GiB), sequential numbering:
    # cpu 0-11 first threads, 12-23 their siblings; single-node platforms report
    # numa_node -1 for PCI devices.
    rows = [(t * 12 + c, 0, 0, c) for t in range(2) for c in range(12)]
    parts = ["### lscpu", lscpu(rows), "### cpuinfo", "vendor_id\t: GenuineIntel",
             "model name\t: Intel(R) Xeon(R) D-2166NT CPU @ 2.00GHz", "flags\t\t: " + FLAGS_INTEL,
             "### cmdline", "BOOT_IMAGE=/vmlinuz-5.14.0-427.13.1.el9_4.x86_64 root=/dev/sda2 ro",
             "### isolated", "",
             "### node 0", "Node 0 MemTotal:       65548392 kB",
             "hugepages 1048576 0", "hugepages 2048 0",
             nic("eno1", "0000:b5:00.0", "3c:ec:ef:10:22:a0", -1, "8086", "37d2", "0x37cd", 32,
                 10000, "i40e"),
             nic("eno2", "0000:b5:00.1", "3c:ec:ef:10:22:a1", -1, "8086", "37d2", "0x37cd", 32,
                 10000, "i40e"),
             "### end"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    (HERE / "r750-2s-48c-512g.txt").write_text(dual_socket())
    (HERE / "edge-1s-12c-64g.txt").write_text(edge())
