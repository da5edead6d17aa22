#!/usr/bin/env bash
# libvirt TLS between two handed-off hosts, as live migration uses it:
#   scripts/libvirt_tls_check.sh SSH_KEY KNOWN_HOSTS ADDRESS_A ADDRESS_B
# On A, `virsh -c qemu+tls://B/system` with the certificates harden installed (the site
# CA) must reach B's libvirtd; with a client certificate from another CA (made on A, in a
# temporary directory given as ?pkipath=: cacert.pem with the site CA, trusted for B's
# server certificate, and the other CA; clientcert.pem, clientkey.pem) B's libvirtd must
# refuse it. Exit 0 when both hold.
set -euo pipefail
key=$1 known=$2 a=$3 b=$4
ssh=(ssh -i "$key" -o BatchMode=yes -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$known")
if ! name=$("${ssh[@]}" "root@$a" "LC_ALL=C virsh -c qemu+tls://$b/system hostname" 2>&1); then
  echo "libvirt TLS $a -> $b with the site's certificates: FAILED: $name" >&2
  exit 1
fi
echo "libvirt TLS $a -> $b with the site's certificates: connected ($name)"
# shellcheck disable=SC2016 # expanded on A
foreign=$("${ssh[@]}" "root@$a" '
  d=$(mktemp -d); trap "rm -rf $d" EXIT; cd "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
    -out other-ca.pem -subj "/O=another CA/CN=another CA" -days 1 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout clientkey.pem \
    -out client.csr -subj "/O=another CA/CN=$(hostname)" 2>/dev/null
  openssl x509 -req -in client.csr -CA other-ca.pem -CAkey ca.key -CAcreateserial \
    -out clientcert.pem -days 1 2>/dev/null
  # both CAs: the site'"'"'s for B'"'"'s server certificate, the other for libvirt'"'"'s own
  # check of the client certificate (so the refusal is B'"'"'s, not the client'"'"'s)
  cat /etc/pki/CA/cacert.pem other-ca.pem > cacert.pem
  LC_ALL=C virsh -c "qemu+tls://'"$b"'/system?pkipath=$d" hostname 2>&1 && exit 3 || exit 0
' 2>&1) || { echo "libvirt TLS $a -> $b with another CA's certificate: CONNECTED (must be refused)" >&2; exit 1; }
echo "libvirt TLS $a -> $b with another CA's certificate: refused ($(echo "$foreign" | tail -n 1 | tr -d '\r' | cut -c1-160))"
