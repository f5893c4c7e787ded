"""PKCS#11 access: the only module that imports pkcs11.

The HSM holds key-encryption keys (KEKs): AES-256, non-extractable and sensitive, so their value never
leaves the token. The vault asks the HSM to wrap (AES-GCM encrypt) and unwrap small secrets (data keys, the
fingerprint key) at start and at rotation only; one SoftHSM2 call costs ~90 us, so per-card work is done in
software with the unwrapped data keys.

It also holds one MAC master key per card network (imported once, CMAC only, non-extractable): a link's
MAC session key is a CMAC under it (SP 800-108 KDF, ``switch.iso.mac``), computed once per sign-on.

Blocking calls: run them off the event loop (``asyncio.to_thread``). One session, guarded by a lock.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import (
    MultipleObjectsReturned,
    NoSuchKey,
    NoSuchToken,
    PinIncorrect,
    PinLenRange,
    PKCS11Error,
)
from pkcs11.mechanisms import GCMParams

GCM_NONCE_BYTES = 12
KEK_BITS = 256
KEK_LABEL_PREFIX = "vault-kek-v"
MAC_MASTER_LABEL_PREFIX = "mac-master-"
# The calls into the token, counted by name for /metrics (vault_hsm_operations_total): a fixed set.
HSM_OPERATIONS = ("ensure_kek", "destroy_kek", "wrap", "unwrap", "import_mac_key", "mac_cmac")


class HsmError(RuntimeError):
    """The HSM could not be opened or refused an operation. Messages never carry the PIN or key bytes."""


class HsmKeyNotFound(HsmError):
    """No key with the asked label is in the token."""


def kek_label(version: int) -> str:
    return f"{KEK_LABEL_PREFIX}{version}"


def mac_master_label(network: str) -> str:
    return f"{MAC_MASTER_LABEL_PREFIX}{network}"


class Hsm:
    """An open, logged-in session on one token."""

    def __init__(self, session: pkcs11.Session) -> None:
        self._session = session
        self._lock = threading.Lock()
        # python-pkcs11's key classes gain encrypt/decrypt through mixins its stubs do not express.
        self._keks: dict[str, Any] = {}
        self._mac_keys: dict[str, Any] = {}
        # Calls by HSM_OPERATIONS name, added to under the lock; read as a copy (operations_count()).
        self._operations_count = dict.fromkeys(HSM_OPERATIONS, 0)

    def operations_count(self) -> dict[str, int]:
        return dict(self._operations_count)

    @classmethod
    def open(cls, module_path: str, token_label: str, pin: str) -> Hsm:
        """Load the PKCS#11 module, find the token by label and log in as the user."""
        try:
            lib = pkcs11.lib(module_path)
        except (OSError, RuntimeError, PKCS11Error) as exc:
            raise HsmError(f"HSM module could not be loaded: {module_path}") from exc
        try:
            token = lib.get_token(token_label=token_label)
        except NoSuchToken:
            raise HsmError(f"HSM token not found: label={token_label!r}") from None
        except MultipleObjectsReturned:
            raise HsmError(f"more than one HSM token has label={token_label!r}") from None
        try:
            session = token.open(user_pin=pin, rw=True)
        except (PinIncorrect, PinLenRange):
            # `from None`: the chained exception would not hold the PIN, but keep the trace minimal.
            raise HsmError("HSM login failed: wrong PIN") from None
        except PKCS11Error as exc:
            raise HsmError(f"HSM login failed: {type(exc).__name__}") from None
        return cls(session)

    def close(self) -> None:
        with self._lock:
            self._keks.clear()
            self._mac_keys.clear()
            try:
                self._session.close()
            except PKCS11Error:
                pass

    def ensure_kek(self, label: str) -> None:
        """Find the KEK with this label, creating it inside the HSM when missing."""
        with self._lock:
            self._operations_count["ensure_kek"] += 1
            self._kek_locked(label, create=True)

    def destroy_kek(self, label: str) -> bool:
        """Delete the KEK with this label from the token (key retirement). False when it was not there."""
        with self._lock:
            self._operations_count["destroy_kek"] += 1
            self._keks.pop(label, None)
            try:
                key = self._session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES,
                                            label=label)
            except NoSuchKey:
                return False
            except MultipleObjectsReturned:
                raise HsmError(f"more than one HSM key has label={label!r}") from None
            try:
                key.destroy()
            except PKCS11Error as exc:
                raise HsmError(f"HSM destroy failed: {type(exc).__name__}") from None
        return True

    def _kek_locked(self, label: str, *, create: bool) -> Any:
        key: Any = self._keks.get(label)
        if key is not None:
            return key
        try:
            key = self._session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES,
                                        label=label)
        except NoSuchKey:
            if not create:
                raise HsmError(f"HSM key not found: label={label!r}") from None
            key = self._session.generate_key(
                KeyType.AES, KEK_BITS, label=label, store=True,
                template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: True,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                    Attribute.SIGN: False,
                    Attribute.VERIFY: False,
                },
            )
        except MultipleObjectsReturned:
            raise HsmError(f"more than one HSM key has label={label!r}") from None
        self._keks[label] = key
        return key

    def wrap(self, label: str, secret: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
        """Encrypt a small secret with the KEK inside the HSM. Returns (nonce, wrapped)."""
        nonce = os.urandom(GCM_NONCE_BYTES)
        with self._lock:
            self._operations_count["wrap"] += 1
            key = self._kek_locked(label, create=False)
            try:
                wrapped = key.encrypt(secret, mechanism=Mechanism.AES_GCM,
                                      mechanism_param=GCMParams(nonce, associated_data))
            except PKCS11Error as exc:
                raise HsmError(f"HSM wrap failed: {type(exc).__name__}") from None
        return nonce, bytes(wrapped)

    def unwrap(self, label: str, nonce: bytes, wrapped: bytes, associated_data: bytes) -> bytes:
        """Decrypt a secret wrapped by ``wrap``; a wrong key, nonce, AAD or a tampered blob fails."""
        with self._lock:
            self._operations_count["unwrap"] += 1
            key = self._kek_locked(label, create=False)
            try:
                secret = key.decrypt(wrapped, mechanism=Mechanism.AES_GCM,
                                     mechanism_param=GCMParams(nonce, associated_data))
            except PKCS11Error as exc:
                raise HsmError(f"HSM unwrap failed: {type(exc).__name__}") from None
        return bytes(secret)

    # MAC master keys: AES keys that can only CMAC (sign) inside the token. Their value never leaves it.

    def import_mac_master_key(self, label: str, material: bytes) -> bool:
        """Store a MAC master key under `label`: sensitive, non-extractable, CMAC only. Returns False and
        changes nothing when the token already holds a key with this label."""
        with self._lock:
            self._operations_count["import_mac_key"] += 1
            try:
                self._mac_key_locked(label)
                return False
            except HsmKeyNotFound:
                pass
            try:
                self._session.create_object({
                    Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.VALUE: material, Attribute.LABEL: label, Attribute.TOKEN: True,
                    Attribute.PRIVATE: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True, Attribute.VERIFY: False, Attribute.ENCRYPT: False,
                    Attribute.DECRYPT: False, Attribute.WRAP: False, Attribute.UNWRAP: False,
                    Attribute.DERIVE: False,
                })
            except PKCS11Error as exc:
                raise HsmError(f"HSM key import failed: {type(exc).__name__}") from None
        return True

    def mac_master_cmac(self, label: str, data: bytes) -> bytes:
        """AES-CMAC (CKM_AES_CMAC, 16 bytes) of `data` under the MAC master key `label`, inside the HSM."""
        with self._lock:
            self._operations_count["mac_cmac"] += 1
            key = self._mac_key_locked(label)
            try:
                return bytes(key.sign(data, mechanism=Mechanism.AES_CMAC))
            except PKCS11Error as exc:
                raise HsmError(f"HSM CMAC failed: {type(exc).__name__}") from None

    def _mac_key_locked(self, label: str) -> Any:
        key: Any = self._mac_keys.get(label)
        if key is not None:
            return key
        try:
            key = self._session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label)
        except NoSuchKey:
            raise HsmKeyNotFound(f"HSM key not found: label={label!r}") from None
        except MultipleObjectsReturned:
            raise HsmError(f"more than one HSM key has label={label!r}") from None
        self._mac_keys[label] = key
        return key

    def __repr__(self) -> str:
        return "Hsm(<session>)"
