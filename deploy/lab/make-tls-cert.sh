#!/usr/bin/env bash
# Make a throw-away CA and a server certificate for 127.0.0.1 / localhost.
#
#   make-tls-cert.sh DIR
#
# Writes DIR/ca.pem (trust this, e.g. imsgw's upstream CA), DIR/ca.key,
# DIR/server.pem (server cert followed by the CA cert), DIR/server.key,
# DIR/server-only.pem.  For kamailio-ims.cfg:
#   -A WITH_TLS -A 'TLS_CERT="DIR/server.pem"' -A 'TLS_KEY="DIR/server.key"' -A 'TLS_CA="DIR/ca.pem"'
set -euo pipefail
if [ "$#" -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
mkdir -p "$dir"
cd "$dir"
days=${CERT_DAYS:-30}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-keyout ca.key -out ca.pem -days "$days" -subj "/CN=imsgw lab CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null

cat > server.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
	-out server-only.pem -days "$days" -extfile server.ext 2>/dev/null
cat server-only.pem ca.pem > server.pem
rm -f server.csr server.ext ca.srl
chmod 600 ca.key server.key
openssl verify -CAfile ca.pem server-only.pem
