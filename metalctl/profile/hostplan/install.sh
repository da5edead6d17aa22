# metalctl: make a profile plan real on an installed host (run as root over SSH; POSIX
# sh). metalctl puts the plan's values above this line: PLAN_CONF, APPLY, UNIT,
# TUNED_PROFILE, TUNED_ISOLATED. Idempotent: a second run prints only "unchanged".
#
# Writes /etc/metalctl/plan.conf, the applier /usr/local/libexec/metalctl-plan and
# metalctl-plan.service (enabled: it applies the plan at every boot), runs the applier
# now, writes tuned's cpu-partitioning isolated_cores and activates the tuned profile
# when tuned is installed. METALCTL_ROOT (default /) prefixes every file path, and with
# it the applier's METALCTL_SYSFS: the unit tests run this script on a recorded tree.
set -u
ROOT=${METALCTL_ROOT:-}
rc=0

put() { # path mode text: replaced atomically when it differs; 0 when changed
  f="$ROOT$1"
  if [ -f "$f" ] && [ "$(cat "$f")" = "$3" ]; then echo "unchanged $1"; return 1; fi
  mkdir -p "${f%/*}" && printf '%s\n' "$3" > "$f.metalctl-new" && chmod "$2" "$f.metalctl-new" \
    && mv -f "$f.metalctl-new" "$f" && { echo "changed $1"; return 0; }
  echo "error $1: not written"
  rc=1
  return 1
}

units=no
put /etc/metalctl/plan.conf 0644 "$PLAN_CONF" || :
put /usr/local/libexec/metalctl-plan 0755 "$APPLY" && units=yes
put /etc/systemd/system/metalctl-plan.service 0644 "$UNIT" && units=yes

# now: the very script the unit runs at boot
METALCTL_PLAN_CONF="$ROOT/etc/metalctl/plan.conf" sh "$ROOT/usr/local/libexec/metalctl-plan" \
  || rc=1

if [ -d "$ROOT/run/systemd/system" ] && command -v systemctl >/dev/null 2>&1; then
  [ "$units" = yes ] && systemctl daemon-reload
  if [ "$(systemctl is-enabled metalctl-plan.service 2>/dev/null)" = enabled ]; then
    echo "unchanged metalctl-plan.service enabled"
  elif systemctl enable metalctl-plan.service >/dev/null 2>&1; then
    echo "changed metalctl-plan.service enabled"
  else
    echo "error metalctl-plan.service: systemctl enable failed"; rc=1
  fi
  if systemctl is-active --quiet metalctl-plan.service; then
    echo "unchanged metalctl-plan.service active"
  elif systemctl start metalctl-plan.service >/dev/null 2>&1; then
    echo "changed metalctl-plan.service active"
  else
    echo "error metalctl-plan.service: did not start (journalctl -u metalctl-plan)"; rc=1
  fi
else
  echo "note no systemd running: the plan is applied now, not at boot"
fi

# Hugepage-backed guests bound to a NUMA node: libvirt 9.0 preallocates their memory
# through a QEMU thread-context pinned to the node's CPUs, which libnuma reads from
# /sys/devices/system/node/nodeN/cpumap. libvirt 9.0's AppArmor abstraction (Debian 12)
# allows only meminfo there: QEMU fails "The nodes select no CPUs". The site's local
# include of that abstraction gets the rule (read by every guest's profile at its start).
AA=/etc/apparmor.d/abstractions/libvirt-qemu
AA_LOCAL=/etc/apparmor.d/local/abstractions/libvirt-qemu
AA_RULE='/sys/devices/system/node/node[0-9]*/cpumap r,'
if printf '%s\n' "$PLAN_CONF" | grep -q '^hugepages [0-9]* [0-9]* [1-9]' && [ -f "$ROOT$AA" ] \
    && ! grep -qF 'node[0-9]*/cpumap' "$ROOT$AA"; then
  old=""
  [ -f "$ROOT$AA_LOCAL" ] && old=$(cat "$ROOT$AA_LOCAL")
  if printf '%s\n' "$old" | grep -qF "$AA_RULE"; then
    echo "unchanged $AA_LOCAL"
  else
    put "$AA_LOCAL" 0644 "$(printf '%s\n%s\n%s\n' "$old" \
      "# metalctl-plan: QEMU's thread-context for hugepage-backed NUMA guests (libnuma)" \
      "  $AA_RULE" | sed '/./,$!d')" || :
  fi
fi

vars_changed=no
if [ -n "$TUNED_ISOLATED" ]; then
  vf="$ROOT/etc/tuned/cpu-partitioning-variables.conf"
  old=""
  [ -f "$vf" ] && old=$(cat "$vf")
  if printf '%s\n' "$old" | grep -q '^isolated_cores='; then
    new=$(printf '%s\n' "$old" | sed "s/^isolated_cores=.*/isolated_cores=$TUNED_ISOLATED/")
  else  # keep what the file says besides (tuned's own comments, no_balance_cores)
    new=$(printf '%s\n%s\n' "$old" "isolated_cores=$TUNED_ISOLATED" | sed '/./,$!d')
  fi
  put /etc/tuned/cpu-partitioning-variables.conf 0644 "$new" && vars_changed=yes
fi
if [ -n "$TUNED_PROFILE" ]; then
  if command -v tuned-adm >/dev/null 2>&1; then
    active=$(tuned-adm active 2>/dev/null | sed -n 's/^Current active profile: //p')
    if [ "$active" = "$TUNED_PROFILE" ] && [ "$vars_changed" = no ]; then
      echo "unchanged tuned profile $TUNED_PROFILE"
    elif tuned-adm profile "$TUNED_PROFILE" >/dev/null 2>&1; then
      echo "changed tuned profile ${active:-none}->$TUNED_PROFILE"
    else
      echo "error tuned: tuned-adm profile $TUNED_PROFILE failed"; rc=1
    fi
  else
    echo "note tuned is not installed: profile $TUNED_PROFILE not activated"
  fi
fi
exit $rc
