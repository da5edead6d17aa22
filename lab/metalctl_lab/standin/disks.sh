# Disks: choose (ignoredisk/clearpart), partition with sfdisk (MBR label, one bootable
# partition), format with the real mke2fs, mount under /mnt/sysimage, fstab by real blkid.

list_disks() {  # whole disks the installer may use, sorted
  for d in /sys/block/*; do
    n=${d##*/}
    case $n in loop*|ram*|sr*|zram*|fd*|dm-*|md*|nbd*) continue ;; esac
    [ "$(cat "$d/size")" -gt 0 ] 2>/dev/null || continue
    # read-only media are never installed on, as anaconda protects them (the lab
    # attaches its Nova release as a read-only disk)
    [ "$(cat "$d/ro" 2>/dev/null)" = 1 ] && continue
    echo "$n"
  done | sort
}

in_list() { echo ",$2," | sed 's|/dev/||g' | grep -q ",$1,"; }

part_dev() {  # DISK N -> the partition's device (vda 1 -> /dev/vda1, nvme0n1 1 -> ...p1)
  case $1 in *[0-9]) echo "/dev/${1}p$2" ;; *) echo "/dev/$1$2" ;; esac
}

choose_disks() {
  DISKS=
  for d in $(list_disks); do
    [ -n "$ONLY_USE" ] && ! in_list "$d" "$ONLY_USE" && continue
    [ -n "$IGNORE_DRIVES" ] && in_list "$d" "$IGNORE_DRIVES" && continue
    DISKS="$DISKS $d"
  done
  DISKS=${DISKS# }
  [ -n "$DISKS" ] || fail "no disk to install on (disks: $(list_disks | tr '\n' ' '); ignoredisk --only-use=$ONLY_USE)"
  log "disks: $DISKS"
}

layout() {  # -> lines "mount|fstype|size|grow|disk|label", the growing partition last
  if [ -n "$AUTOPART" ] && [ -z "$PARTS" ]; then
    PARTS="/|ext4||1||$NL"
  fi
  first=${BL_DRIVE:-${DISKS%% *}}
  echo "$PARTS" | grep . | awk -F'|' -v d="$first" -v OFS='|' \
    '{ if ($5 == "") $5 = d; if ($4 != "") g[++ng] = $0; else print }
     END { for (i = 1; i <= ng; i++) print g[i] }'
}

partition_disk() {  # DISK: write its MBR label and partitions from $LAYOUT
  disk=$1
  # as anaconda: a disk's partitions go only under clearpart --all naming (or not
  # restricting to) it; zerombr alone only lets an unreadable label be replaced
  if [ -z "$CLEARPART_ALL" ] || ! { [ -z "$CLEAR_DRIVES" ] || in_list "$disk" "$CLEAR_DRIVES"; }; then
    sfdisk -d "/dev/$disk" > /dev/null 2>&1 && \
      fail "disk $disk holds a partition table and the kickstart does not clear it (clearpart --all)"
  fi
  boot_mnt=/
  echo "$LAYOUT" | grep -q '^/boot|' && boot_mnt=/boot
  script="label: dos$NL"
  i=0
  echo "$LAYOUT" | grep "|$disk|" > "$KSDIR/layout.$disk"
  [ "$(wc -l < "$KSDIR/layout.$disk")" -le 4 ] || fail "disk $disk: more than 4 partitions on an MBR label"
  while IFS='|' read -r mnt fstype size grow d label; do
    i=$((i + 1))
    line=""
    [ -z "$grow" ] && line="size=${size}MiB, "
    [ "$fstype" = swap ] && line="${line}type=82" || line="${line}type=83"
    [ "$mnt" = "$boot_mnt" ] && { line="$line, bootable"; BOOT_DISK=$disk; }
    script="$script$line$NL"
    echo "$mnt|$fstype|$(part_dev "$disk" $i)|$label" >> "$KSDIR/mounts"
  done < "$KSDIR/layout.$disk"
  echo "$script" > "$KSDIR/sfdisk.$disk"
  must "sfdisk $disk" sfdisk -q --wipe always --wipe-partitions always "/dev/$disk" \
    < "$KSDIR/sfdisk.$disk"
  log "partitioned $disk: $(echo "$script" | tail -n +2 | tr '\n' ';')"
}

format_all() {
  while IFS='|' read -r mnt fstype dev label; do
    i=0; while [ ! -b "$dev" ] && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); mdev -s; done
    if [ "$fstype" = swap ]; then
      must "mkswap $dev" mkswap ${label:+-L "$label"} "$dev"
    else
      # no 64bit feature on the file system extlinux reads the kernel from
      must "mke2fs $dev" /usr/sbin/mke2fs -q -F -t "$fstype" -O ^64bit ${label:+-L "$label"} "$dev"
    fi
    log "formatted $dev ($fstype) for $mnt"
  done < "$KSDIR/mounts"
}

mount_all() {
  mkdir -p "$SYSROOT"
  # shortest mount point first, so / is under /boot
  awk -F'|' '$2 != "swap" { print length($1) "|" $0 }' "$KSDIR/mounts" | sort -n | cut -d'|' -f2- |
  while IFS='|' read -r mnt fstype dev label; do
    mkdir -p "$SYSROOT$mnt"
    mount -t "$fstype" "$dev" "$SYSROOT$mnt" || { echo "mount $dev" > "$KSDIR/mount.err"; break; }
  done
  [ -e "$KSDIR/mount.err" ] && fail "cannot $(cat "$KSDIR/mount.err")"
  return 0
}

prepare_disks() {
  choose_disks
  LAYOUT=$(layout)
  : > "$KSDIR/mounts"
  for disk in $(echo "$LAYOUT" | cut -d'|' -f5 | sort -u); do
    case " $DISKS " in *" $disk "*) ;; *) fail "part --ondisk=$disk: not a usable disk ($DISKS)" ;; esac
    partition_disk "$disk"
  done
  format_all
  mount_all
  log "partitions ready"
}

write_fstab() {
  {
    echo "# written by the stand-in installer from the kickstart's partitions"
    while IFS='|' read -r mnt fstype dev label; do
      uuid=$(/usr/sbin/blkid -s UUID -o value "$dev")
      [ -n "$uuid" ] || fail "blkid found no UUID on $dev"
      if [ "$fstype" = swap ]; then echo "UUID=$uuid none swap sw 0 0"
      else echo "UUID=$uuid $mnt $fstype defaults 0 $([ "$mnt" = / ] && echo 1 || echo 2)"; fi
    done < "$KSDIR/mounts"
  } > "$KSDIR/fstab"
  cp "$KSDIR/fstab" "$SYSROOT/etc/fstab"
  log "fstab written ($(grep -c UUID= "$KSDIR/fstab") entries)"
}

make_unbootable() {  # after a failure: never boot a half-installed disk
  [ -n "$MBR_WRITTEN" ] || return 0
  dd if=/dev/zero of="/dev/$BOOT_DISK" bs=440 count=1 conv=notrunc 2>/dev/null && sync
  log "boot code on $BOOT_DISK cleared: the half-installed disk does not boot"
}
