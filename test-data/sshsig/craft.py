#!/usr/bin/env python3
"""Crafts the SSH signature fixtures that `ssh-keygen -Y sign` cannot make.

Run by make-fixtures.sh from this directory, after ssh-keygen has written the
keys and the plain signatures. Needs the `cryptography` package. Every
signature here is built from PROTOCOL.sshsig and PROTOCOL.u2f directly:

- sk-ed25519.sig / fail_sk-no-touch.sig: an Ed25519 security-key
  (sk-ssh-ed25519@openssh.com) signature, made without an authenticator from
  a fixed test-only seed, with the user-presence flag set and clear.
- rsa3072-rsa-sha2-256.sig: the RSA key with the rsa-sha2-256 signature type
  (ssh-keygen 9.2 always writes rsa-sha2-512).
- fail_rsa-sha1.sig: the RSA key with the legacy SHA-1 `ssh-rsa` type.
- rsa3072-short.sig: an RSA signature whose first byte is zero, written one
  byte short (as some signers do); its message is rsa3072-short.msg.
- fail_reserved.sig: a non-empty reserved field; the signature is over the
  empty one, as a verifier that ignores the field would check it.
- fail_ed25519-malleable.sig: an Ed25519 signature with s + l in place of s
  (still < 2^253); its message is malleable.msg.
- fail_version0.sig / fail_version2.sig / fail_trailing-data.sig /
  fail_truncated.sig / fail_tampered.sig: ed25519.sig with one change.
- oneline.sig / crlf.sig / whitespace.sig / fail_after-footer.sig /
  fail_bad-base64.sig: ed25519.sig's armor rewritten.
"""

import base64
import hashlib
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding

NS = b"colorsort"
BEGIN = b"-----BEGIN SSH SIGNATURE-----"
END = b"-----END SSH SIGNATURE-----"
# The order of the Ed25519 base point.
ELL = 2**252 + 27742317777372353535851937790883648493
SK_SEED = hashlib.sha256(b"colorsort test-only security key").digest()
SK_APPLICATION = b"ssh:"


def string(b):
    return struct.pack(">I", len(b)) + b


def read_string(b, at):
    (n,) = struct.unpack(">I", b[at : at + 4])
    return b[at + 4 : at + 4 + n], at + 4 + n


def armor(blob, width=70, eol=b"\n"):
    b64 = base64.b64encode(blob)
    lines = [b64[i : i + width] for i in range(0, len(b64), width)]
    return eol.join([BEGIN] + lines + [END]) + eol


def dearmor(text):
    body = text.split(BEGIN + b"\n", 1)[1].split(b"\n" + END, 1)[0]
    return base64.b64decode(b"".join(body.split()))


def fields(blob):
    """magic+version, then the five strings of an SSHSIG blob."""
    assert blob[:6] == b"SSHSIG"
    at = 10
    out = []
    for _ in range(5):
        value, at = read_string(blob, at)
        out.append(value)
    assert at == len(blob)
    return out


def sshsig(version, key, reserved, hashalg, sig, ns=NS):
    return (
        b"SSHSIG"
        + struct.pack(">I", version)
        + string(key)
        + string(ns)
        + string(reserved)
        + string(hashalg)
        + string(sig)
    )


def signed_data(message, hashalg=b"sha512", ns=NS):
    digest = hashlib.new(hashalg.decode(), message).digest()
    return b"SSHSIG" + string(ns) + string(b"") + string(hashalg) + string(digest)


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_ssh_private_key(f.read(), password=None)


def write(name, data):
    with open(name, "wb") as f:
        f.write(data)


def read(name):
    with open(name, "rb") as f:
        return f.read()


def rsa_blob(key):
    numbers = key.public_key().public_numbers()

    def mpint(n):
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return string(b"\0" + raw if raw[0] & 0x80 else raw)

    return string(b"ssh-rsa") + mpint(numbers.e) + mpint(numbers.n)


def rsa_sig(key, data, kind, digest):
    return string(kind) + string(key.sign(data, padding.PKCS1v15(), digest))


def main():
    message = read("message.txt")
    ed = load_key("keys/ed25519")
    rsa = load_key("keys/rsa3072")
    good = dearmor(read("ed25519.sig"))
    ed_key, _, _, ed_hash, ed_sig = fields(good)

    # Security key: blob is type, point, application; the authenticator
    # signs sha256(application) || flags || counter || sha256(data).
    sk = ed25519.Ed25519PrivateKey.from_private_bytes(SK_SEED)
    point = sk.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    sk_type = b"sk-ssh-ed25519@openssh.com"
    sk_key = string(sk_type) + string(point) + string(SK_APPLICATION)
    write("keys/sk-ed25519.pub", sk_type + b" " + base64.b64encode(sk_key) + b" test-only sk\n")
    for name, flags in [("sk-ed25519.sig", 0x01), ("fail_sk-no-touch.sig", 0x00)]:
        counter = 42
        tosign = (
            hashlib.sha256(SK_APPLICATION).digest()
            + bytes([flags])
            + struct.pack(">I", counter)
            + hashlib.sha256(signed_data(message)).digest()
        )
        sig = string(sk_type) + string(sk.sign(tosign)) + bytes([flags]) + struct.pack(">I", counter)
        write(name, armor(sshsig(1, sk_key, b"", b"sha512", sig)))

    # RSA with the signature types ssh-keygen 9.2 does not write.
    rkey = rsa_blob(rsa)
    assert rkey == fields(dearmor(read("rsa3072.sig")))[0], "rsa key blob differs"
    data = signed_data(message)
    write(
        "rsa3072-rsa-sha2-256.sig",
        armor(sshsig(1, rkey, b"", b"sha512", rsa_sig(rsa, data, b"rsa-sha2-256", hashes.SHA256()))),
    )
    write(
        "fail_rsa-sha1.sig",
        armor(sshsig(1, rkey, b"", b"sha512", rsa_sig(rsa, data, b"ssh-rsa", hashes.SHA1()))),
    )
    for i in range(100000):
        msg = b"short %d\n" % i
        raw = rsa.sign(signed_data(msg), padding.PKCS1v15(), hashes.SHA512())
        if raw[0] == 0:
            sig = string(b"rsa-sha2-512") + string(raw[1:])
            write("rsa3072-short.msg", msg)
            write("rsa3072-short.sig", armor(sshsig(1, rkey, b"", b"sha512", sig)))
            break
    else:
        raise SystemExit("no rsa signature with a leading zero byte")

    # Reserved field set; signature over the data with the empty one.
    sig = string(b"ssh-ed25519") + string(ed.sign(signed_data(message)))
    write("fail_reserved.sig", armor(sshsig(1, ed_key, b"x", b"sha512", sig)))

    # s + l: the same point equation, a scalar that is not reduced.
    for i in range(1000):
        msg = b"malleable %d\n" % i
        raw = ed.sign(signed_data(msg))
        s = int.from_bytes(raw[32:], "little") + ELL
        if s < 2**253:
            sig = string(b"ssh-ed25519") + string(raw[:32] + s.to_bytes(32, "little"))
            write("malleable.msg", msg)
            write("fail_ed25519-malleable.sig", armor(sshsig(1, ed_key, b"", b"sha512", sig)))
            break
    else:
        raise SystemExit("no ed25519 signature with s + l < 2^253")

    # One change each to ed25519.sig's blob.
    write("fail_version0.sig", armor(good[:6] + struct.pack(">I", 0) + good[10:]))
    write("fail_version2.sig", armor(good[:6] + struct.pack(">I", 2) + good[10:]))
    write("fail_trailing-data.sig", armor(good + b"\0\0\0\0"))
    write("fail_truncated.sig", armor(good[:-10]))
    tampered = bytearray(good)
    tampered[-40] ^= 0x01
    write("fail_tampered.sig", armor(bytes(tampered)))

    # ed25519.sig's armor rewritten.
    text = read("ed25519.sig")
    assert text == armor(good), "ssh-keygen's armor is not 70-column lf"
    write("oneline.sig", armor(good, width=10**6))
    write("crlf.sig", armor(good, eol=b"\r\n"))
    lines = text.split(b"\n")
    spaced = [lines[0], b"  " + lines[1][:30] + b" \t" + lines[1][30:], b""] + lines[2:]
    write("whitespace.sig", b"\n".join(spaced))
    write("fail_after-footer.sig", text + b"trailing text\n")
    write("fail_bad-base64.sig", text.replace(lines[1], lines[1][:20] + b"!" + lines[1][21:], 1))


if __name__ == "__main__":
    main()
