#!/usr/bin/env bash
# Certificates for a TLS cluster, made with openssl: a cluster CA, one certificate for the seed
# and one for the nodes (members' names are not compared with their addresses, so the nodes
# share one), each good for serving and for calling (server and client authentication).
#
#   scripts/make-certs.sh DIR [NAME ...]
#
# Writes DIR/ca.pem and DIR/ca.key (the CA: keep its key away from the cluster), DIR/seed.pem
# and DIR/seed.key, DIR/node.pem and DIR/node.key. The certificates name localhost, 127.0.0.1,
# seed and every NAME given (the host names clients use to reach the seed and the nodes), valid
# for 825 days. Used by compose.tls.yaml and scripts/compose-tls-test.sh; for production, sign
# with your own CA. The key files are made readable by all (a container's user may differ
# from yours): tighten them where that matters.
set -euo pipefail
DIR=${1:?usage: scripts/make-certs.sh DIR [NAME ...]}
shift
command -v openssl >/dev/null || { echo "make-certs.sh: error: openssl is not installed (apt-get install -y openssl)" >&2; exit 2; }
mkdir -p "$DIR"
cd "$DIR"
SAN="DNS:localhost,IP:127.0.0.1,DNS:seed"
for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ ]]; then SAN+=",IP:$name"; else SAN+=",DNS:$name"; fi
done
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout ca.key -out ca.pem \
    -days 825 -subj "/CN=dkv cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
for who in seed node; do
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$who.key" -out "$who.csr" \
        -subj "/CN=dkv $who" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' \
        "$SAN" >"$who.ext"
    openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$who.pem" -days 825 \
        -extfile "$who.ext" 2>/dev/null
    rm -f "$who.csr" "$who.ext"
done
rm -f ca.srl
chmod 644 seed.key node.key
echo "make-certs.sh: wrote ca.pem, seed.pem, node.pem and their keys in $(pwd)"
