"""Android's adbkey.pub format and adbd's signature check.

adbkey.pub is ``base64(RSAPublicKey) + " user@host"``, where the struct (from AOSP
``libcrypto_utils/android_pubkey``) is little-endian uint32 words:
``len`` (modulus size in words), ``n0inv`` (-1/n mod 2^32), ``n[len]``, ``rr[len]``
(R^2 mod n with R = 2^(32*len), for Montgomery math on the device) and ``exponent``.

The host signs the 20-byte token as if it were a SHA-1 digest (``RSA_sign(NID_sha1, ...)``):
PKCS#1 v1.5 over the SHA-1 DigestInfo prefix followed by the token itself, unhashed. adbd
checks it with ``RSA_verify(NID_sha1, ...)``; in ``cryptography`` terms that is
``Prehashed(SHA1())``.
"""

from __future__ import annotations

import base64
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils


def decode_android_pubkey(text: str | bytes) -> rsa.RSAPublicKey:
    """``adbkey.pub`` content (with or without the trailing user@host, NUL) -> public key."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    blob = base64.b64decode(text.strip("\0 \n").split()[0])
    (words,) = struct.unpack_from("<I", blob)
    if words <= 0 or len(blob) != 4 * (3 + 2 * words):
        raise ValueError(f"not an Android RSA public key ({len(blob)} bytes, {words} words)")
    n = int.from_bytes(blob[8:8 + 4 * words], "little")
    (exponent,) = struct.unpack_from("<I", blob, 8 + 8 * words)
    return rsa.RSAPublicNumbers(exponent, n).public_key()


def encode_android_pubkey(key: rsa.RSAPublicKey, user: str = "test@seaformer") -> str:
    """Public key -> ``adbkey.pub`` line."""
    numbers = key.public_numbers()
    words = key.key_size // 32
    n0inv = (-pow(numbers.n, -1, 1 << 32)) % (1 << 32)
    rr = pow(1 << (32 * words), 2, numbers.n)
    blob = (struct.pack("<II", words, n0inv) + numbers.n.to_bytes(4 * words, "little")
            + rr.to_bytes(4 * words, "little") + struct.pack("<I", numbers.e))
    return base64.b64encode(blob).decode() + " " + user


def verify_token(key: rsa.RSAPublicKey, token: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
        return True
    except (InvalidSignature, ValueError):
        return False


def same_key(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()
