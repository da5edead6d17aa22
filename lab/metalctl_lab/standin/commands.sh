# Kickstart commands: each is checked before anything runs and recorded for the install
# phases. Honoured, logged-and-ignored and refused commands are exactly the cases below.

ks_opts() {  # WHAT VALUE-OPTS FLAG-OPTS WORDS...: sets O_<opt> (- as _), ARGS (positional)
  _what=$1 _vals=" $2 " _flags=" $3 "
  for _o in $2 $3; do unset "O_$(echo "$_o" | tr -- '-' '_')"; done
  shift 3
  ARGS=
  while [ $# -gt 0 ]; do
    case $1 in
      --*=*) _n=${1%%=*}; _n=${_n#--}; _v=${1#*=}
        case $_vals in *" $_n "*) ;; *) fail "kickstart line $KSLINE_NO: $_what: unknown option --$_n" ;; esac ;;
      --*) _n=${1#--}
        case $_vals$_flags in
          *" $_n "*) case $_vals in
              *" $_n "*) [ $# -ge 2 ] || fail "kickstart line $KSLINE_NO: $_what: --$_n needs a value"; _v=$2; shift ;;
              *) _v=1 ;;
            esac ;;
          *) fail "kickstart line $KSLINE_NO: $_what: unknown option --$_n" ;;
        esac ;;
      *) ARGS="$ARGS$1$NL"; shift; continue ;;
    esac
    eval "O_$(echo "$_n" | tr -- '-' '_')=\$_v"
    shift
  done
}

must() {  # WHAT CMD...: run a tool, its output to the log; on failure stop with its words
  _what=$1; shift
  if ! "$@" > "$KSDIR/tool.out" 2>&1; then
    cat "$KSDIR/tool.out" >> "$ANALOG"
    fail "$_what failed: $(tail -n 3 "$KSDIR/tool.out" | tr '\n' ' ')"
  fi
  cat "$KSDIR/tool.out" >> "$ANALOG"
}

ignored() { log "kickstart line $KSLINE_NO: $KSCMD logged and ignored ($*)"; }
refused() { fail "kickstart line $KSLINE_NO: $KSCMD is not supported by the stand-in installer ($*)"; }
append() { eval "$1=\"\${$1}\$2\$NL\""; }  # VAR LINE: add a line to a list variable

mac_of_device() {  # kickstart --device (MAC, link, bootif or a name) -> MAC
  case $1 in
    ??:??:??:??:??:??) echo "$1" | tr 'A-F' 'a-f' ;;
    *) [ -n "$STANDIN_CHECK" ] && { echo "${1:-link} (resolved at install)"; return; }
      mac_of_nic "$1" ;;
  esac
}

mac_of_nic() {
  case $1 in
    ""|link|bootif) cut -d' ' -f2 /tmp/bootif ;;
    *) cat "/sys/class/net/$1/address" 2>/dev/null ;;
  esac
}

prefix_of() {  # 255.255.255.0 or 24 -> 24
  case $1 in *.*) echo "$1" | awk -F. '{ n = 0; for (i = 1; i <= 4; i++) { v = $i
      while (v > 0) { n += v % 2; v = int(v / 2) } } print n }' ;; *) echo "$1" ;; esac
}

cmd_network() {
  ks_opts network "device bootproto ip netmask gateway nameserver hostname ipv6 ipv6gateway mtu onboot" \
    "activate noipv6 nodefroute nodns" "$@"
  [ -n "$O_hostname" ] && HOSTNAME_KS=$O_hostname
  [ -n "$O_nameserver" ] && NAMESERVERS=$O_nameserver
  [ -z "$O_device$O_bootproto$O_ip" ] && return 0  # a --hostname-only line
  mac=$(mac_of_device "$O_device")
  [ -n "$mac" ] || fail "kickstart line $KSLINE_NO: network --device=$O_device: no such NIC"
  [ "$O_onboot" = no ] && { ignored "--onboot=no: $mac left unconfigured"; return 0; }
  NETN=$((NETN + 1)); f=$KSDIR/net.$NETN
  printf '# from the kickstart (line %s)\n[Match]\nMACAddress=%s\n\n[Network]\n' \
    "$KSLINE_NO" "$mac" > "$f"
  case ${O_bootproto:-dhcp} in
    dhcp|bootp) printf 'DHCP=ipv4\n' >> "$f" ;;
    static) [ -n "$O_ip" ] && [ -n "$O_netmask" ] || fail "kickstart line $KSLINE_NO: static needs --ip and --netmask"
      printf 'Address=%s/%s\n' "$O_ip" "$(prefix_of "$O_netmask")" >> "$f"
      [ -n "$O_gateway" ] && printf 'Gateway=%s\n' "$O_gateway" >> "$f" ;;
    *) fail "kickstart line $KSLINE_NO: network --bootproto=$O_bootproto is not supported" ;;
  esac
  case $O_ipv6 in
    "") ;;
    auto) printf 'IPv6AcceptRA=yes\n' >> "$f" ;;
    dhcp) printf 'DHCP=yes\nIPv6AcceptRA=yes\n' >> "$f" ;;
    *) printf 'Address=%s\n' "$O_ipv6" >> "$f"
       [ -n "$O_ipv6gateway" ] && printf 'Gateway=%s\n' "$O_ipv6gateway" >> "$f" ;;
  esac
  for s in $(echo "$O_nameserver" | tr ',' ' '); do printf 'DNS=%s\n' "$s" >> "$f"; done
  printf '\n[DHCPv4]\nClientIdentifier=mac\n' >> "$f"
  [ -n "$O_mtu" ] && printf '\n[Link]\nMTUBytes=%s\n' "$O_mtu" >> "$f"
  return 0
}

cmd_part() {
  ks_opts part "fstype size ondisk ondrive label fsoptions maxsize" "grow asprimary" "$@"
  mnt=$(echo "$ARGS" | head -n 1)
  fstype=${O_fstype:-ext4}
  case $mnt in biosboot) ignored "BIOS boot with an MBR label needs no biosboot partition"; return 0 ;; esac
  case $mnt in /boot/efi) refused "the stand-in boots by BIOS only" ;; esac
  case $mnt in swap) fstype=swap ;; /*) ;; *) refused "mount point '$mnt'" ;; esac
  case $fstype in
    ext4|ext3|ext2|swap) ;;
    xfs) log "kickstart line $KSLINE_NO: part $mnt --fstype=xfs formatted as ext4 (no mkfs.xfs here)"; fstype=ext4 ;;
    *) refused "--fstype=$fstype" ;;
  esac
  [ -n "$O_size$O_grow" ] || fail "kickstart line $KSLINE_NO: part $mnt needs --size or --grow"
  append PARTS "$mnt|$fstype|$O_size|$O_grow|${O_ondisk:-$O_ondrive}|$O_label"
}

cmd_one() {  # WORDS...: check and record one command
  IFS=$OIFS; set +f  # the words are bound: back to ordinary splitting
  KSCMD=$1; shift
  case $KSCMD in
    text|cmdline|graphical|skipx) ignored "the stand-in has only the console" ;;
    firstboot|eula|logging|timesource|zerombr) [ "$KSCMD" = zerombr ] && ZEROMBR=1
      [ "$KSCMD" = zerombr ] || ignored "nothing to do on Debian" ;;
    selinux|firewall|keyboard) ignored "not applied: the installed Debian image keeps its own" ;;
    repo) ignored "liveimg installs bring no packages" ;;
    lang) ks_opts lang "addsupport" "" "$@"; LANG_KS=$(echo "$ARGS" | head -n 1) ;;
    timezone) ks_opts timezone "ntpservers" "utc isUtc nontp" "$@"; TZ_KS=$(echo "$ARGS" | head -n 1)
      [ -n "$O_ntpservers" ] && ignored "--ntpservers" ;;
    services) ks_opts services "enabled disabled" "" "$@"
      SVC_ON=$O_enabled SVC_OFF=$O_disabled ;;
    clearpart) ks_opts clearpart "drives disklabel list" "all initlabel none linux" "$@"
      [ -n "$O_all" ] || refused "only clearpart --all (whole disks are wiped)"
      CLEARPART_ALL=1 CLEAR_DRIVES=$O_drives ;;
    ignoredisk) ks_opts ignoredisk "only-use drives" "" "$@"
      ONLY_USE=$O_only_use IGNORE_DRIVES=$O_drives ;;
    part|partition) cmd_part "$@" ;;
    autopart) ks_opts autopart "type fstype" "nohome noswap noboot nolvm encrypted" "$@"
      [ -n "$O_encrypted" ] && refused "--encrypted"
      AUTOPART=1
      log "kickstart line $KSLINE_NO: autopart${O_type:+ --type=$O_type} laid out as one ext4 root partition (no LVM in the stand-in)" ;;
    liveimg) ks_opts liveimg "url checksum proxy" "noverifyssl" "$@"
      [ -n "$O_url" ] || fail "kickstart line $KSLINE_NO: liveimg needs --url"
      LIVEIMG_URL=$O_url LIVEIMG_SUM=$O_checksum LIVEIMG_INSECURE=$O_noverifyssl ;;
    url|cdrom|harddrive|nfs|ostreesetup|ostreecontainer)
      refused "it installs a liveimg only, never packages" ;;
    rootpw) ks_opts rootpw "" "iscrypted plaintext lock allow-ssh" "$@"
      ROOTPW=$(echo "$ARGS" | head -n 1) ROOTPW_LOCK=$O_lock
      [ -z "$ROOTPW" ] || [ -n "$O_iscrypted" ] || \
        refused "a clear root password: use --iscrypted with a crypt hash" ;;
    user) ks_opts user "name groups homedir uid gid shell password gecos" "iscrypted plaintext lock" "$@"
      [ -n "$O_name" ] || fail "kickstart line $KSLINE_NO: user needs --name"
      [ -z "$O_password" ] || [ -n "$O_iscrypted" ] || refused "a clear user password"
      append USERS "$O_name|$O_groups|$O_homedir|$O_uid|$O_shell|$O_password|$O_gecos" ;;
    sshkey) ks_opts sshkey "username" "" "$@"
      [ -n "$O_username" ] || fail "kickstart line $KSLINE_NO: sshkey needs --username"
      append SSHKEYS "$O_username|$(echo "$ARGS" | head -n 1)" ;;
    network) cmd_network "$@" ;;
    bootloader) ks_opts bootloader "append location timeout boot-drive driveorder password" \
        "leavebootorder nombr iscrypted md5pass" "$@"
      BL_APPEND=$O_append BL_LOCATION=${O_location:-mbr} BL_TIMEOUT=${O_timeout:-5}
      BL_DRIVE=$O_boot_drive
      [ -n "$O_password" ] && ignored "--password (extlinux menu passwords are not set)" ;;
    reboot|poweroff|shutdown|halt) ks_opts "$KSCMD" "" "eject kexec" "$@"; FINISH=$KSCMD ;;
    *) fail "kickstart line $KSLINE_NO: unknown command '$KSCMD'" ;;
  esac
  return 0
}

parse_commands() {
  if [ -s "$KSDIR/errors" ]; then
    IFS="$TAB" read -r l why < "$KSDIR/errors"
    fail "kickstart line $l: $why"
  fi
  NETN=0
  while IFS="$TAB" read -r KSLINE_NO line; do
    words=$(KSLINE=$line awk -f $LIB/ks-words.awk) || fail "kickstart line $KSLINE_NO: unbalanced quote"
    OIFS=$IFS; IFS=$NL; set -f
    # shellcheck disable=SC2086
    cmd_one $words
  done < "$KSDIR/commands"
  [ -n "$LIVEIMG_URL" ] || fail "the kickstart has no liveimg --url (the only install source)"
  [ -n "$PARTS$AUTOPART" ] || fail "the kickstart has neither part nor autopart"
  [ -s "$KSDIR/packages" ] && log "%packages logged, not installed (liveimg): $(grep -v '^[[:space:]]*$' "$KSDIR/packages" | tr '\n' ' ')"
  log "kickstart checked: $(wc -l < "$KSDIR/commands") commands, $(wc -l < "$KSDIR/scripts") scripts"
}

plan_summary() {  # the parse result, for the check mode
  echo "liveimg=$LIVEIMG_URL"
  echo "finish=${FINISH:-none}"
  echo "append=$BL_APPEND"
  echo "autopart=$AUTOPART"
  printf 'part=%s\n' $PARTS
  echo "users=$(echo "$USERS" | cut -d'|' -f1 | tr '\n' ' ')"
  echo "sshkeys=$(echo "$SSHKEYS" | grep -c .)"
  echo "rootpw_crypted=$([ -n "$ROOTPW" ] && echo yes)"
  echo "networks=$NETN"
  cat "$KSDIR"/net.* 2>/dev/null
}
