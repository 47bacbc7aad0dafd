//! The one rule for an `ssh-rsa` public key, wherever one is read (the
//! server's identity, a signer's key): its modulus from [`MIN_BITS`] to
//! [`MAX_BITS`] bits and an exponent that `rsa` accepts, from the exponent
//! and modulus of its wire encoding.

use super::wire::bit_length;
use rsa::BoxedUint;

/// Smallest modulus, in bits, accepted anywhere.
pub(crate) const MIN_BITS: usize = 2048;
/// Largest modulus, in bits, accepted anywhere.
pub(crate) const MAX_BITS: usize = 8192;
/// Longest public exponent accepted, in bytes: `rsa` takes at most
/// 2^33 - 1.
const MAX_EXPONENT_LEN: usize = 5;

/// Why an exponent and a modulus make no key we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// The modulus has this many bits, outside [`MIN_BITS`]..=[`MAX_BITS`].
    Size(usize),
    /// The numbers do not form a valid RSA public key (an exponent that is
    /// empty, too long, even or 1; a modulus `rsa` refuses).
    Invalid,
}

/// Whether a modulus of `bits` bits is a size we accept.
pub(crate) fn check_size(bits: usize) -> Result<(), KeyError> {
    if (MIN_BITS..=MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(KeyError::Size(bits))
    }
}

/// The RSA public key with exponent `e` and modulus `n`, big-endian
/// magnitudes (leading zero bytes allowed). The modulus's size is checked
/// first.
pub(crate) fn public_key(e: &[u8], n: &[u8]) -> Result<rsa::PublicKey, KeyError> {
    check_size(bit_length(n))?;
    if e.is_empty() || e.len() > MAX_EXPONENT_LEN {
        return Err(KeyError::Invalid);
    }
    let big = |bytes: &[u8]| {
        // The modulus has at most MAX_BITS significant bits, but leading
        // zero bytes may make it longer: a length past u32 is refused.
        let bits = u32::try_from(bytes.len() * 8).map_err(|_| KeyError::Invalid)?;
        BoxedUint::from_be_slice(bytes, bits).map_err(|_| KeyError::Invalid)
    };
    rsa::PublicKey::new_with_size_limits(big(n)?, big(e)?, MIN_BITS..=MAX_BITS)
        .map_err(|_| KeyError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A modulus of `bits` bits: its top bit set, odd, and otherwise
    /// arbitrary (`rsa` checks no more of a public modulus).
    fn modulus(bits: usize) -> Vec<u8> {
        let mut n = vec![0x5a; bits.div_ceil(8)];
        n[0] = 1 << ((bits - 1) % 8);
        if let Some(last) = n.last_mut() {
            *last |= 1;
        }
        n
    }

    /// What is given, the exponent and modulus, and what comes of them:
    /// the key's size in bits, or why there is no key.
    type Case = (&'static str, Vec<u8>, Vec<u8>, Result<usize, KeyError>);

    #[test]
    fn keys_are_checked_size_first() {
        let e = [1, 0, 1];
        let cases: [Case; 10] = [
            ("2048 bits", e.to_vec(), modulus(2048), Ok(2048)),
            ("8192 bits", e.to_vec(), modulus(8192), Ok(8192)),
            (
                "leading zero byte",
                e.to_vec(),
                [&[0][..], &modulus(3072)].concat(),
                Ok(3072),
            ),
            (
                "2047 bits",
                e.to_vec(),
                modulus(2047),
                Err(KeyError::Size(2047)),
            ),
            (
                "8193 bits",
                e.to_vec(),
                modulus(8193),
                Err(KeyError::Size(8193)),
            ),
            ("no modulus", e.to_vec(), Vec::new(), Err(KeyError::Size(0))),
            (
                "size before exponent",
                Vec::new(),
                modulus(1024),
                Err(KeyError::Size(1024)),
            ),
            (
                "empty exponent",
                Vec::new(),
                modulus(2048),
                Err(KeyError::Invalid),
            ),
            (
                "6-byte exponent",
                vec![1, 0, 0, 0, 0, 1],
                modulus(2048),
                Err(KeyError::Invalid),
            ),
            (
                "even exponent",
                vec![1, 0, 0],
                modulus(2048),
                Err(KeyError::Invalid),
            ),
        ];
        for (what, e, n, want) in cases {
            let got = public_key(&e, &n).map(|k| {
                use rsa::traits::PublicKeyParts;
                k.n().bit_width_vartime() as usize
            });
            assert_eq!(got, want, "{what}");
        }
    }
}
