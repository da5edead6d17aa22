# The installed system: liveimg laid down, extlinux, then the kickstart's configuration
# (network, host name, root password hash, users, SSH keys, time zone, language, services).

fetch_liveimg() {  # to stdout; hashed on the way only with --checksum (slow under TCG)
  if [ -n "$LIVEIMG_SUM" ]; then
    mkfifo "$KSDIR/liveimg.fifo"
    sha256sum < "$KSDIR/liveimg.fifo" > "$KSDIR/liveimg.sha256" &
    # shellcheck disable=SC2086
    curl -fsS --retry 3 ${LIVEIMG_INSECURE:+--insecure} "$LIVEIMG_URL" 2>> "$ANALOG" \
      | tee "$KSDIR/liveimg.fifo"
  else
    # shellcheck disable=SC2086
    curl -fsS --retry 3 ${LIVEIMG_INSECURE:+--insecure} "$LIVEIMG_URL" 2>> "$ANALOG"
  fi
}

install_liveimg() {
  log "unpacking liveimg ${LIVEIMG_URL%%\?*}"
  case ${LIVEIMG_URL%%\?*} in
    *.tar) unz=cat ;;
    *.tar.xz|*.txz) unz="xz -dc" ;;
    *.tar.bz2|*.tbz2) unz="bunzip2 -c" ;;
    *) unz="/usr/bin/gzip -dc" ;;
  esac
  set -o pipefail
  fetch_liveimg | $unz | tar -x -C "$SYSROOT" 2>> "$ANALOG" \
    || fail "liveimg ${LIVEIMG_URL%%\?*}: download or unpack failed"
  wait
  set +o pipefail
  if [ -n "$LIVEIMG_SUM" ]; then
    got=$(cut -d' ' -f1 "$KSDIR/liveimg.sha256")
    [ "${LIVEIMG_SUM#sha256:}" = "$got" ] || \
      fail "liveimg checksum mismatch: expected $LIVEIMG_SUM, got sha256 $got"
    log "liveimg checksum verified (sha256 $got)"
  fi
  [ -x "$SYSROOT/bin/sh" ] || fail "liveimg ${LIVEIMG_URL%%\?*} holds no root file system"
  log "liveimg unpacked"
}

install_bootloader() {
  [ "$BL_LOCATION" = none ] && { log "bootloader --location=none: none installed"; return 0; }
  kernel=$(ls "$SYSROOT"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
  [ -n "$kernel" ] || fail "the liveimg has no /boot/vmlinuz-*"
  version=${kernel##*/vmlinuz-}
  initrd=$SYSROOT/boot/initrd.img-$version
  [ -f "$initrd" ] || fail "the liveimg has no /boot/initrd.img-$version"
  root_uuid=$(awk '$2 == "/" { sub(/^UUID=/, "", $1); print $1 }' "$KSDIR/fstab")
  prefix=/boot
  grep -q '^/boot|' "$KSDIR/mounts" && prefix=""  # paths are relative to /boot's own fs
  args="root=UUID=$root_uuid ro"
  # like anaconda, keep the installer's console= unless the kickstart names one
  case " $BL_APPEND " in *" console="*) ;; *)
    for a in $(cat /proc/cmdline); do case $a in console=*) args="$args $a" ;; esac; done ;;
  esac
  [ -n "$BL_APPEND" ] && args="$args $BL_APPEND"
  mkdir -p "$SYSROOT/boot/extlinux"
  cat > "$SYSROOT/boot/extlinux/extlinux.conf" <<EOC
# written by the stand-in installer (kickstart bootloader); kernel updates do not edit it
DEFAULT linux
PROMPT 0
TIMEOUT $((BL_TIMEOUT * 10))
LABEL linux
  LINUX $prefix/vmlinuz-$version
  INITRD $prefix/initrd.img-$version
  APPEND $args
EOC
  must "extlinux --install" /usr/bin/extlinux --install "$SYSROOT/boot/extlinux"
  dd if=$LIB/mbr.bin of="/dev/$BOOT_DISK" bs=440 count=1 conv=notrunc 2>/dev/null || fail "writing the MBR of $BOOT_DISK failed"
  MBR_WRITTEN=1
  log "bootloader: extlinux on $BOOT_DISK, kernel $version, append: $args"
}

set_root_password() {
  [ -n "$ROOTPW$ROOTPW_LOCK" ] || return 0
  hash=$ROOTPW
  [ -n "$ROOTPW_LOCK" ] && hash="!${ROOTPW:-*}"
  HASH=$hash awk -F: -v OFS=: -v days=$(($(date +%s) / 86400)) \
    '$1 == "root" { $2 = ENVIRON["HASH"]; $3 = days } { print }' \
    "$SYSROOT/etc/shadow" > "$KSDIR/shadow" || fail "cannot edit /etc/shadow"
  cat "$KSDIR/shadow" > "$SYSROOT/etc/shadow"
  log "rootpw: hash written to /etc/shadow${ROOTPW_LOCK:+ (locked)}"
}

add_users() {
  echo "$USERS" | grep . | while IFS='|' read -r name groups home uid shell pw gecos; do
    for g in $(echo "$groups" | tr ',' ' '); do
      grep -q "^$g:" "$SYSROOT/etc/group" || chroot "$SYSROOT" groupadd "$g"
    done
    chroot "$SYSROOT" useradd -m ${groups:+-G "$groups"} ${home:+-d "$home"} ${uid:+-u "$uid"} \
      ${shell:+-s "$shell"} ${gecos:+-c "$gecos"} ${pw:+-p "$pw"} "$name" >> /tmp/anaconda.log 2>&1 \
      || { echo "$name" > "$KSDIR/user.err"; break; }
    log "user $name added${groups:+ (groups $groups)}"
  done
  [ -e "$KSDIR/user.err" ] && fail "useradd $(cat "$KSDIR/user.err") failed"
  return 0
}

add_ssh_keys() {
  echo "$SSHKEYS" | grep . | while IFS='|' read -r user key; do
    entry=$(awk -F: -v u="$user" '$1 == u { print $3 ":" $4 ":" $6 }' "$SYSROOT/etc/passwd")
    [ -n "$entry" ] || { echo "$user" > "$KSDIR/sshkey.err"; break; }
    home=${entry#*:*:}; ids=${entry%:*}
    mkdir -p "$SYSROOT$home/.ssh"
    echo "$key" >> "$SYSROOT$home/.ssh/authorized_keys"
    chmod 700 "$SYSROOT$home/.ssh"; chmod 600 "$SYSROOT$home/.ssh/authorized_keys"
    chown -R "$ids" "$SYSROOT$home/.ssh"
    log "sshkey for $user"
  done
  [ -e "$KSDIR/sshkey.err" ] && fail "sshkey --username=$(cat "$KSDIR/sshkey.err"): no such user"
  return 0
}

configure_network() {
  mkdir -p "$SYSROOT/etc/systemd/network"
  for f in "$KSDIR"/net.*; do
    [ -e "$f" ] || continue
    cp "$f" "$SYSROOT/etc/systemd/network/10-kickstart-${f##*.}.network"
  done
  [ "$NETN" -gt 0 ] && log "network: $NETN systemd-networkd configuration(s) from the kickstart"
  if [ -n "$HOSTNAME_KS" ]; then
    echo "${HOSTNAME_KS%%.*}" > "$SYSROOT/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 %s %s\n' "$HOSTNAME_KS" "${HOSTNAME_KS%%.*}" > "$SYSROOT/etc/hosts"
  fi
  if [ -n "$NAMESERVERS" ]; then
    for s in $(echo "$NAMESERVERS" | tr ',' ' '); do echo "nameserver $s"; done > "$SYSROOT/etc/resolv.conf"
  else
    cp /etc/resolv.conf "$SYSROOT/etc/resolv.conf"
  fi
}

configure_services() {
  for s in $(echo "$SVC_ON" | tr ',' ' '); do
    [ "$s" = sshd ] && s=ssh  # the unit's Debian name
    if chroot "$SYSROOT" systemctl enable "$s" >> /tmp/anaconda.log 2>&1; then log "service $s enabled"
    else log "service $s: not in the image, skipped"; fi
  done
  for s in $(echo "$SVC_OFF" | tr ',' ' '); do
    [ "$s" = sshd ] && s=ssh
    chroot "$SYSROOT" systemctl disable "$s" >> /tmp/anaconda.log 2>&1 && log "service $s disabled"
  done
  return 0
}

configure_target() {
  bind_target
  configure_network
  set_root_password
  add_users
  add_ssh_keys
  if [ -n "$TZ_KS" ]; then
    if [ -e "$SYSROOT/usr/share/zoneinfo/$TZ_KS" ]; then
      ln -sf "/usr/share/zoneinfo/$TZ_KS" "$SYSROOT/etc/localtime"; echo "$TZ_KS" > "$SYSROOT/etc/timezone"
      log "timezone $TZ_KS"
    else log "timezone $TZ_KS: not in the image's zoneinfo, left as is"; fi
  fi
  if [ -n "$LANG_KS" ]; then
    # anaconda installs the language's langpack; the image has only the locales it was
    # built with, and a LANG naming a missing one makes every program warn (setlocale)
    lc=$(echo "${LANG_KS#*.}" | tr 'A-Z' 'a-z' | tr -d '-')
    if [ -d "$SYSROOT/usr/lib/locale/${LANG_KS%%.*}.$lc" ] || [ "${LANG_KS%%.*}" = C ]; then
      echo "LANG=$LANG_KS" > "$SYSROOT/etc/default/locale"; log "lang $LANG_KS"
    else
      echo "LANG=C.UTF-8" > "$SYSROOT/etc/default/locale"
      log "lang $LANG_KS: not among the image's locales, C.UTF-8 set"
    fi
  fi
  configure_services
  log "system configured"
}

finish() {
  mkdir -p "$SYSROOT/var/log/installer"
  cp /tmp/anaconda.log "$SYSROOT/var/log/installer/anaconda.log"
  sync
  for m in $(awk -v r="$SYSROOT" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  sync
  log "installation complete; ${FINISH:-no reboot/poweroff in the kickstart: staying up}"
  case $FINISH in
    reboot) reboot -f ;;
    poweroff|shutdown) poweroff -f ;;
    halt) halt -f ;;
  esac
  while :; do sleep 3600; done
}
