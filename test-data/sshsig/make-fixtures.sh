#!/bin/sh
# Makes the SSH signature fixtures in this directory with the reference
# tools: ssh-keygen for the keys, the plain signatures and the fingerprints,
# and craft.py (python3 with the `cryptography` package) for what
# ssh-keygen cannot make: security-key signatures, other RSA signature
# types, and signatures altered one field at a time.
#
# Keys are made only when missing, so a rerun keeps them; the Ed25519 and
# RSA signatures are deterministic and come out the same. All keys are
# test-only and unencrypted. Run from anywhere:
#
#     sh test-data/sshsig/make-fixtures.sh
set -eu
cd "$(dirname "$0")"
mkdir -p keys

key() { # NAME TYPE [BITS]
    if [ ! -f "keys/$1" ]; then
        ssh-keygen -q -t "$2" ${3:+-b "$3"} -N '' -C "test-only $1" -f "keys/$1"
    fi
    chmod 600 "keys/$1"
}
key ed25519 ed25519
key other-ed25519 ed25519
key rsa3072 rsa 3072
key rsa1024 rsa 1024
key ecdsa ecdsa 256

printf 'A message signed with test-only keys.\n' > message.txt
printf 'Another message.\n' > other.txt

sign() { # OUT KEY FILE NAMESPACE [OPTION]
    rm -f "$3.sig"
    ssh-keygen -q -Y sign -f "keys/$2" -n "$4" ${5:+-O "$5"} "$3"
    mv "$3.sig" "$1"
}
sign ed25519.sig ed25519 message.txt colorsort
sign ed25519-sha256.sig ed25519 message.txt colorsort hashalg=sha256
sign rsa3072.sig rsa3072 message.txt colorsort
sign rsa3072-sha256.sig rsa3072 message.txt colorsort hashalg=sha256
sign other-ed25519.sig other-ed25519 message.txt colorsort
sign fail_wrong-namespace.sig ed25519 message.txt git
sign fail_other-file.sig ed25519 other.txt colorsort
sign fail_ecdsa.sig ecdsa message.txt colorsort
sign fail_rsa1024.sig rsa1024 message.txt colorsort

python3 craft.py

for pub in keys/*.pub; do
    ssh-keygen -l -f "$pub" > "${pub%.pub}.fp"
done

entry() { # KEY: the key fields of keys/KEY.pub, without the comment
    cut -d' ' -f1,2 "keys/$1.pub"
}
ED=$(entry ed25519)
{
    echo '# Test-only signers for the sshsig fixtures; made by make-fixtures.sh.'
    echo "alice@example.com $ED"
    echo "rsa@example.com $(entry rsa3072)"
    echo
    echo "sk@example.com $(entry sk-ed25519) a security key"
    echo "\"quoted name@example.com,q2@example.com\" $ED"
    echo "*@team.example.com,!mallory@team.example.com $ED"
    echo "  # an indented comment"
    echo "expired@example.com valid-before=\"20010101Z\" $ED"
    echo "future@example.com valid-after=\"20990101Z\" $ED"
    echo "window@example.com VALID-AFTER=\"20200101000000Z\",Valid-Before=\"203001010000Z\" $ED"
    echo "gitonly@example.com namespaces=\"git\" $ED"
    echo "patterns@example.com namespaces=\"file,color*,!colorsort-test\" $ED"
    echo "notcolorsort@example.com namespaces=\"*,!colorsort\" $ED"
} > allowed_signers

# Files ssh-keygen uses (skipping what it cannot parse) but we refuse whole.
{
    echo "ecdsa@example.com $(entry ecdsa)"
    echo "rsa1024@example.com $(entry rsa1024)"
    echo "alice@example.com $ED"
} > fail_allowed_signers-unsupported
{
    echo "alice@example.com valid-before=\"20990101\" $ED"
} > fail_allowed_signers-localtime
{
    echo "*@example.com cert-authority $ED"
    echo "alice@example.com $ED"
} > fail_allowed_signers-cert-authority
{
    echo "\"alice@example.com\",bob@example.com $ED"
    echo "alice@example.com $ED"
} > fail_allowed_signers-quote-comma
{
    echo "alice@example.com namespaces=\"colorsort\",namespaces=\"git\" $ED"
    echo "alice@example.com $ED"
} > fail_allowed_signers-duplicate-option
