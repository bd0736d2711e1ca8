#!/bin/sh
# Makes the keys every replica of one deployment shares, once, into DIR (default: keys):
#
#   url-binding.key        keys.url_binding: signs the poll and page URLs the gateway hands
#                          out, so one minted by a replica verifies on all the others
#   mask.key               keys.mask: keys the digests in masking placeholders, so the same
#                          secret masks the same way whichever replica answers
#   audit-signing.key      audit.signing_key_file: the Ed25519 seed (64 hex characters)
#                          that signs audit checkpoints; keep it away from the database
#   audit-signing.key.pub  its public half: what `portcullis audit verify --public-key`
#                          trusts; give it to whoever verifies, keep it anywhere
#
# It never overwrites: a new url-binding key breaks the poll URLs agents hold, a new mask
# key changes placeholders, and a new signing key must be added to the verifiers' keys.
# Needs openssl (1.1.1 or later), od and tr. Usage: deploy/make-keys.sh [DIR]
set -eu

dir=${1:-keys}
umask 077
mkdir -p "$dir"
for f in url-binding.key mask.key audit-signing.key audit-signing.key.pub; do
    if [ -e "$dir/$f" ]; then
        echo "make-keys: $dir/$f exists; not overwriting any key" >&2
        exit 1
    fi
done

# Shared keys: base64 of 32 random bytes.
openssl rand -base64 32 >"$dir/url-binding.key"
openssl rand -base64 32 >"$dir/mask.key"

# An Ed25519 key; the gateway reads its 32-byte seed as hex, verifiers the public key as
# hex. Both are the last 32 bytes of their DER encodings (PKCS#8 and SubjectPublicKeyInfo).
hex32() { tail -c 32 | od -An -v -tx1 | tr -d ' \n'; }
pem=$(openssl genpkey -algorithm ed25519)
{ printf '%s\n' "$pem" | openssl pkey -outform DER | hex32 && echo; } >"$dir/audit-signing.key"
{ printf '%s\n' "$pem" | openssl pkey -pubout -outform DER | hex32 && echo; } >"$dir/audit-signing.key.pub"
chmod 0644 "$dir/audit-signing.key.pub"
for f in audit-signing.key audit-signing.key.pub; do
    if [ "$(tr -d '\n' <"$dir/$f" | wc -c)" -ne 64 ]; then
        echo "make-keys: $dir/$f is not 64 hex characters: did openssl fail?" >&2
        exit 1
    fi
done

echo "make-keys: wrote $dir/url-binding.key, mask.key, audit-signing.key and audit-signing.key.pub"
