# %pre, %post and %onerror, run unchanged: /bin/sh (or --interpreter) from the installer,
# %post chrooted into the target unless --nochroot; ANA_INSTALL_PATH=/mnt/sysimage is
# exported to all. Output goes to /tmp/program.log, --log and the console.
bind_target() {
  for d in dev dev/pts proc sys run; do
    mkdir -p "$SYSROOT/$d"
    grep -q " $SYSROOT/$d " /proc/mounts || mount --bind "/$d" "$SYSROOT/$d"
  done
  [ -e "$SYSROOT/etc/resolv.conf" ] || cp /etc/resolv.conf "$SYSROOT/etc/resolv.conf"
}

run_script() {  # N LINE HEADER: run one section; returns its exit status
  n=$1 line=$2 header=$3
  words=$(KSLINE=$header awk -f $LIB/ks-words.awk) || fail "line $line: bad quoting"
  OIFS=$IFS; IFS=$NL; set -f; set -- $words; IFS=$OIFS; set +f
  kind=$1; shift
  KSLINE_NO=$line
  ks_opts "$kind" "interpreter log" "nochroot erroronfail" "$@"
  interp=${O_interpreter:-/bin/sh}
  out=$KSDIR/out.$n
  log "running $kind (kickstart line $line)"
  if [ "$kind" = %post ] && [ -z "$O_nochroot" ]; then
    bind_target
    cp "$KSDIR/script.$n" "$SYSROOT/tmp/ks-script-$n"
    (cd / && chroot "$SYSROOT" "$interp" "/tmp/ks-script-$n") < /dev/null > "$out" 2>&1
    rc=$?
    rm -f "$SYSROOT/tmp/ks-script-$n"
    logfile=${O_log:+$SYSROOT$O_log}
  else
    (cd / && ANA_INSTALL_PATH=$SYSROOT "$interp" "$KSDIR/script.$n") < /dev/null > "$out" 2>&1
    rc=$?
    logfile=$O_log
  fi
  cat "$out" >> /tmp/program.log
  cat "$out" > /dev/console
  [ -n "$logfile" ] && { mkdir -p "${logfile%/*}"; cat "$out" >> "$logfile"; }
  log "$kind (kickstart line $line) exited $rc"
  LAST_OUT=$(tail -n 3 "$out" | tr '\n' ' ')
  [ $rc -eq 0 ] || [ -z "$O_erroronfail" ] || return $rc
  return 0
}

run_scripts() {  # pre | post | onerror, in kickstart order
  while IFS="$TAB" read -r n line header; do
    case "$header " in "%$1 "*) ;; *) continue ;; esac
    if ! run_script "$n" "$line" "$header"; then
      [ "$1" = onerror ] && continue
      fail "%$1 --erroronfail (kickstart line $line) failed with exit status $rc: $LAST_OUT"
    fi
  done < "$KSDIR/scripts"
}
