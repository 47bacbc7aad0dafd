#!/usr/bin/env bash
# Regenerates the age fixtures in this folder with the real `age` command
# (age 1.1.1 made the committed files) and the test-only RSA keys in
# ../keys/ (made once with ssh-keygen; kept if present, because tests pin
# their fingerprints).
#
# Good files are sealed by `age -R`; every `fail_*` file is a good file
# with one defect introduced by the Python snippets below, so each one
# exercises exactly one rejection rule. Files whose header must differ from
# what `age` writes (stanzas before or after ours, other file keys) are
# sealed by a small age encoder in the last snippet, with a MAC that
# verifies, so that only the rule in question can refuse them.
# tests/age_interop.rs runs `age -d` on every file here: `age` 1.1.1 opens
# the good ones, refuses the `fail_*` ones, and opens those that colorsort
# refuses on purpose (its list of deliberate differences).
# Needs: age, ssh-keygen, python3 with Pillow (for the PNG plaintexts) and
# cryptography (for RSA-OAEP and ChaCha20-Poly1305).
#
# Usage: test-data/age/make-fixtures.sh   (from any directory)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
keys="$here/../keys"
plain="$here/plain"
mkdir -p "$keys" "$plain"

for name in server other; do
    if [ ! -f "$keys/test-only-$name-key.pem" ]; then
        ssh-keygen -q -t rsa -b 2048 -m PEM -N "" -C colorsort-test-only \
            -f "$keys/test-only-$name-key"
        mv "$keys/test-only-$name-key" "$keys/test-only-$name-key.pem"
    fi
    chmod 600 "$keys/test-only-$name-key.pem"
done
server="$keys/test-only-server-key.pub"
other="$keys/test-only-other-key.pub"

# Plaintexts: a tiny PNG, a ~150 KiB noise PNG (three STREAM chunks), a PNG
# of exactly 64 KiB (one full final chunk) and an empty file.
python3 - "$plain" <<'EOF'
import io, random, struct, sys, zlib
from PIL import Image

out = sys.argv[1]
rng = random.Random(20240601)

small = Image.new("RGB", (16, 16))
small.putdata([(200 + x, 8 * y, 16) for y in range(16) for x in range(16)])
small.save(f"{out}/small.png", optimize=False)

noise = Image.frombytes("RGB", (224, 224), bytes(rng.getrandbits(8) for _ in range(224 * 224 * 3)))
noise.save(f"{out}/noise.png")

# A PNG padded to exactly 65536 bytes with a private ancillary chunk.
buf = io.BytesIO()
Image.frombytes("RGB", (96, 96), bytes(rng.getrandbits(8) for _ in range(96 * 96 * 3))).save(buf, "PNG")
png = buf.getvalue()
iend = png.rindex(b"IEND") - 4
pad = 65536 - len(png) - 12
assert pad >= 0
data = bytes(pad)
chunk = struct.pack(">I", pad) + b"paDd" + data + struct.pack(">I", zlib.crc32(b"paDd" + data))
png = png[:iend] + chunk + png[iend:]
assert len(png) == 65536
open(f"{out}/exact64k.png", "wb").write(png)

open(f"{out}/empty.bin", "wb").close()
EOF

# A plaintext whose sealed file is a whole number of 48-byte armor lines, so
# that its armor ends in a full line: found from the size age gives a
# one-chunk file (its header has a fixed length for one RSA key).
age -R "$server" -o "$plain/probe.age" "$plain/empty.bin"
overhead=$(stat -c %s "$plain/probe.age")
rm "$plain/probe.age"
python3 - "$plain" "$overhead" <<'EOF'
import random, sys
out, overhead = sys.argv[1], int(sys.argv[2])
size = 48 + (-overhead) % 48
rng = random.Random(48)
open(f"{out}/aligned.bin", "wb").write(bytes(rng.getrandbits(8) for _ in range(size)))
EOF

cd "$here"
rm -f ./*.age

age -R "$server" -o small.age "$plain/small.png"
age -R "$server" -a -o small.armored.age "$plain/small.png"
age -R "$server" -o noise.age "$plain/noise.png"
age -R "$server" -a -o noise.armored.age "$plain/noise.png"
age -R "$server" -o exact64k.age "$plain/exact64k.png"
age -R "$server" -o empty.age "$plain/empty.bin"
age -R "$server" -a -o aligned.armored.age "$plain/aligned.bin"
age -R "$other" -R "$server" -o two-recipients.age "$plain/small.png"
age -R "$other" -o fail_wrong_key.age "$plain/small.png"

python3 - <<'EOF'
import base64

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

def read(name):
    return open(name, "rb").read()

def write(name, data):
    open(name, "wb").write(data)

def split(data):
    """Returns (offset of the MAC's base64, offset just after the header)."""
    mac = data.index(b"\n--- ") + 5
    return mac, data.index(b"\n", mac) + 1

def unused_bit(ch):
    """The same character with its lowest (unused) bit flipped."""
    return B64[B64.index(chr(ch)) ^ 1].encode()

small = read("small.age")
noise = read("noise.age")
mac, end = split(small)

# MAC: decode, flip one byte, re-encode canonically.
raw = bytearray(base64.b64decode(small[mac:end - 1] + b"="))
raw[7] ^= 0x01
write("fail_flipped_mac.age", small[:mac] + base64.b64encode(raw).rstrip(b"=") + small[end - 1:])

# MAC: 43 characters carry 32 bytes plus two unused bits in the last one.
write("fail_mac_not_canonical.age", small[:end - 2] + unused_bit(small[end - 2]) + small[end - 1:])

# Stanza body: the 256-byte body ends in a 22-character line whose last
# character carries four unused bits.
body_end = small.index(b"\n---") # the LF that ends the body's last line
last = body_end - 1
assert (body_end - small.rindex(b"\n", 0, body_end) - 1) % 4 == 2
write("fail_body_not_canonical.age", small[:last] + unused_bit(small[last]) + small[last + 1:])

# Payload: flip a ciphertext byte of the first chunk (after the 16-byte nonce).
flipped = bytearray(small)
flipped[end + 16 + 10] ^= 0x40
write("fail_flipped_payload.age", bytes(flipped))

# STREAM framing, on the three-chunk file.
_, nend = split(noise)
full = 65536 + 16
write("fail_truncated.age", noise[:nend + 16 + full + 1000])
write("fail_missing_final.age", noise[:nend + 16 + 2 * full])
write("fail_trailing_data.age", small + b"\x00")
write("fail_short_nonce.age", small[:end + 9])

# Header: an unsupported version.
write("fail_version.age", small.replace(b"age-encryption.org/v1\n", b"age-encryption.org/v2\n", 1))

# Armor, from `age -a` output.
armored = read("small.armored.age")
lines = armored.split(b"\n")
begin, endl = lines[0], b"-----END AGE ENCRYPTED FILE-----"
assert begin == b"-----BEGIN AGE ENCRYPTED FILE-----" and endl in lines
body = b"".join(lines[1:lines.index(endl)])

def wrap(b64, width):
    return b"\n".join(b64[i:i + width] for i in range(0, len(b64), width))

write("small.crlf.armored.age", armored.replace(b"\n", b"\r\n"))
write("small.mixed-eol.armored.age", armored.replace(b"\n", b"\r\n", 2))
# After the end line: whitespace, Unicode's included (U+00A0, U+3000).
write("small.spaced.armored.age", armored + "\r\n \t\v\f\u00a0\u3000\n".encode())
write("fail_armor_leading_whitespace.age", b"\n" + armored)
write("fail_armor_long_line.age", begin + b"\n" + wrap(body, 76) + b"\n" + endl + b"\n")
write("fail_armor_short_line.age", begin + b"\n" + wrap(body, 60) + b"\n" + endl + b"\n")
write("fail_armor_garbage_after_end.age", armored + b"garbage\n")
write("fail_armor_no_end.age", armored[:armored.index(endl)])
# The last data character before the `=` padding carries unused bits; take
# whichever armored file has padding.
for name in ("small.armored.age", "noise.armored.age"):
    a = read(name)
    b = b"".join(a.split(b"\n")[1:a.split(b"\n").index(endl)])
    if b.endswith(b"="):
        pad = b.index(b"=")
        write("fail_armor_not_canonical.age",
              begin + b"\n" + wrap(b[:pad - 1] + unused_bit(b[pad - 1]) + b[pad:], 64) + b"\n" + endl + b"\n")
        break
else:
    raise SystemExit("no armored file ends in padding; rerun to get new sizes")

aligned = read("aligned.armored.age").split(b"\n")
assert len(aligned[-3]) == 64 and aligned[-2] == endl, "not aligned"
EOF

# Headers other than age's own, sealed with a known file key.
python3 - "$server" "$plain/small.png" <<'EOF'
import base64, hashlib, hmac, os, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

pub_path, plain_path = sys.argv[1], sys.argv[2]
plaintext = open(plain_path, "rb").read()
pub_line = open(pub_path, "rb").read()
public = serialization.load_ssh_public_key(pub_line)
size = public.key_size // 8

def b64(data):
    return base64.b64encode(data).rstrip(b"=")

tag = b64(hashlib.sha256(base64.b64decode(pub_line.split()[1])).digest()[:4])

def oaep(message):
    return public.encrypt(message, padding.OAEP(
        mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
        label=b"age-encryption.org/v1/ssh-rsa"))

def stanza(args, body):
    text = b64(body)
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    if len(text) % 64 == 0:
        lines.append(b"")
    return b"-> " + b" ".join(args) + b"\n" + b"\n".join(lines) + b"\n"

def hkdf(ikm, salt, info):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()

def seal(stanzas, file_key):
    header = b"age-encryption.org/v1\n" + b"".join(stanzas) + b"---"
    mac = hmac.new(hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()
    nonce = os.urandom(16)
    aead = ChaCha20Poly1305(hkdf(file_key, nonce, b"payload"))
    chunks = [plaintext[i:i + 65536] for i in range(0, len(plaintext), 65536)] or [b""]
    out = header + b" " + b64(mac) + b"\n" + nonce
    for i, chunk in enumerate(chunks):
        last = b"\x01" if i == len(chunks) - 1 else b"\x00"
        out += aead.encrypt(i.to_bytes(11, "big") + last, chunk, None)
    return out

def write(name, data):
    open(name, "wb").write(data)

key = os.urandom(16)
ours = stanza([b"ssh-rsa", tag], oaep(key))
garbage = stanza([b"ssh-rsa", tag], os.urandom(size))
no_tag = stanza([b"ssh-rsa"], os.urandom(size))
grease = stanza([b"x-grease"], b"")

# The encoder itself, checked: one good stanza.
write("script-sealed.age", seal([ours], key))

# age takes the first ssh-rsa stanza that bears our tag or is malformed:
# that one decides, and nothing after it is tried.
write("fail_rsa_garbage_first.age", seal([garbage, ours], key))
write("rsa-garbage-after.age", seal([ours, garbage], key))
write("fail_rsa_no_tag_first.age", seal([no_tag, ours], key))
write("rsa-no-tag-after.age", seal([ours, no_tag], key))
# Go reads a short RSA ciphertext as the number it spells.
while True:
    body = oaep(key)
    if body[0] == 0:
        break
write("rsa-short-body.age", seal([stanza([b"ssh-rsa", tag], body[1:])], key))
write("fail_rsa_short_garbage_first.age",
      seal([stanza([b"ssh-rsa", tag], os.urandom(size - 1)), ours], key))

# What age 1.1.1 opens and colorsort refuses on purpose.
scrypt = stanza([b"scrypt", b64(os.urandom(16)), b"10"], os.urandom(32))
write("fail_scrypt_beside.age", seal([scrypt, ours], key))
short_key = os.urandom(15)
write("fail_file_key_15.age", seal([stanza([b"ssh-rsa", tag], oaep(short_key))], short_key))
write("fail_too_many_stanzas.age", seal([grease] * 64 + [ours], key))
write("fail_stanza_body_too_large.age",
      seal([stanza([b"x-grease"], os.urandom(8193)), ours], key))
write("fail_header_too_long.age", seal([stanza([b"x-grease", b"a" * 65536], b""), ours], key))
EOF

ls -l "$here"/*.age
