//! The server's master key, the keys derived from it, access keys, and sealed secrets.
//!
//! One 256-bit master key (a file or `BERTH_MASTER_KEY`) is the root of every secret the
//! server keeps. Purpose-specific keys are derived from it with HMAC-SHA256 over a fixed label,
//! so the token-signing key and the sealing key are independent and a leak of one says nothing
//! of the other. Access-key secrets must be recoverable (SigV4 verification needs the secret
//! itself, not a hash of it), so they are stored sealed with AES-256-GCM, bound to their key id
//! as associated data: a sealed secret copied onto another key id does not open.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine;
use rand::Rng;
use zeroize::{Zeroize, Zeroizing};

use crate::token::TokenKey;

/// Length of the master key and of every derived key, in bytes.
pub const KEY_LEN: usize = 32;

/// The version byte that starts every sealed value.
const SEAL_VERSION: u8 = 1;
/// Label of the derived sealing key.
const SEAL_LABEL: &[u8] = b"berth/v1/seal-access-key-secrets";
/// Label of the derived token-signing key.
const TOKEN_LABEL: &[u8] = b"berth/v1/registry-tokens";

/// Characters of generated access key ids after `AKIA` (the base32 alphabet AWS uses).
const KEY_ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Characters of generated secrets (base64, as AWS secrets are).
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Length of a generated secret access key, as AWS issues them.
const SECRET_LEN: usize = 40;

/// Errors about keys and sealed secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The master key text is not base64 of exactly 32 bytes.
    #[error("the master key must be the base64 encoding of exactly 32 bytes")]
    MasterKeyFormat,
    /// A sealed value is too short or has an unknown version.
    #[error("the sealed value is malformed")]
    SealedFormat,
    /// A sealed value does not open with this key and key id: another master key sealed it,
    /// it was altered, or it belongs to another access key.
    #[error("the sealed value does not open with this master key (or was altered)")]
    SealedMismatch,
    /// The opened value is not UTF-8.
    #[error("the sealed value is not text")]
    NotText,
    /// The cryptographic library refused an operation it should not refuse.
    #[error("the cryptographic library failed")]
    Crypto,
}

/// A secret string: zeroed when dropped, never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The secret itself, for the few places that must use it (signing, comparison, the one
    /// time it is shown to its owner).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The server's master key.
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> MasterKey {
        let mut bytes = [0u8; KEY_LEN];
        rand::rng().fill(&mut bytes);
        MasterKey(bytes)
    }

    /// A master key from its raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey(bytes)
    }

    /// Parses the base64 text form (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<MasterKey, KeyError> {
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| KeyError::MasterKeyFormat)?,
        );
        let bytes: [u8; KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::MasterKeyFormat)?;
        Ok(MasterKey(bytes))
    }

    /// The base64 text form, for the key file.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn derive(&self, label: &[u8]) -> [u8; KEY_LEN] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let tag = hmac::sign(&key, label);
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(&tag.as_ref()[..KEY_LEN]);
        out
    }

    /// The key that seals stored access-key secrets.
    pub fn seal_key(&self) -> SealKey {
        SealKey(self.derive(SEAL_LABEL))
    }

    /// The key that signs registry tokens.
    pub fn token_key(&self) -> TokenKey {
        TokenKey::from_bytes(self.derive(TOKEN_LABEL))
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Seals and opens stored secrets (AES-256-GCM, random 96-bit nonce, key id as associated data).
///
/// Layout of a sealed value: `version (1) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`.
pub struct SealKey([u8; KEY_LEN]);

impl SealKey {
    fn cipher(&self) -> Result<LessSafeKey, KeyError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &self.0).map_err(|_| KeyError::Crypto)?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Seals `plaintext`, bound to `aad` (the access key id).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce);
        let mut body = plaintext.to_vec();
        self.cipher()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| KeyError::Crypto)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        body.zeroize();
        Ok(out)
    }

    /// Opens a value sealed with the same key and `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Secret, KeyError> {
        let tag_len = AES_256_GCM.tag_len();
        if sealed.len() < 1 + NONCE_LEN + tag_len || sealed[0] != SEAL_VERSION {
            return Err(KeyError::SealedFormat);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1..=NONCE_LEN]);
        let mut body = Zeroizing::new(sealed[1 + NONCE_LEN..].to_vec());
        let plain = self
            .cipher()?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| KeyError::SealedMismatch)?;
        let text = std::str::from_utf8(plain).map_err(|_| KeyError::NotText)?;
        Ok(Secret::new(text.to_owned()))
    }
}

impl Drop for SealKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

/// A new access key: an id shaped like AWS's (`AKIA` and 16 base32 characters) and a
/// 40-character secret.
pub fn generate_access_key() -> (String, Secret) {
    let mut rng = rand::rng();
    let mut id = String::from("AKIA");
    for _ in 0..16 {
        id.push(char::from(
            KEY_ID_ALPHABET[rng.random_range(0..KEY_ID_ALPHABET.len())],
        ));
    }
    let secret: String = (0..SECRET_LEN)
        .map(|_| char::from(SECRET_ALPHABET[rng.random_range(0..SECRET_ALPHABET.len())]))
        .collect();
    (id, Secret::new(secret))
}

/// Whether `id` can be an access key id: 16 to 128 ASCII letters and digits (AWS's rule; ids
/// given through `BERTH_ROOT_ACCESS_KEY_ID` need not start with `AKIA`).
pub fn is_access_key_id(id: &str) -> bool {
    (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secret_opens_only_with_its_key_and_id() {
        let master = MasterKey::generate();
        let sealed = master
            .seal_key()
            .seal(b"wJalrXUtnFEMI", b"AKIAEXAMPLE")
            .unwrap();
        assert!(
            !sealed.windows(8).any(|w| w == b"wJalrXUt"),
            "plaintext visible"
        );
        let opened = master.seal_key().open(&sealed, b"AKIAEXAMPLE").unwrap();
        assert_eq!(opened.expose(), "wJalrXUtnFEMI");
        assert!(matches!(
            master.seal_key().open(&sealed, b"AKIAOTHER"),
            Err(KeyError::SealedMismatch)
        ));
        let other = MasterKey::generate();
        assert!(matches!(
            other.seal_key().open(&sealed, b"AKIAEXAMPLE"),
            Err(KeyError::SealedMismatch)
        ));
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(master.seal_key().open(&altered, b"AKIAEXAMPLE").is_err());
        assert!(matches!(
            master.seal_key().open(&sealed[..10], b"AKIAEXAMPLE"),
            Err(KeyError::SealedFormat)
        ));
        // Two seals of one secret differ (fresh nonces).
        let again = master
            .seal_key()
            .seal(b"wJalrXUtnFEMI", b"AKIAEXAMPLE")
            .unwrap();
        assert_ne!(sealed, again);
    }

    #[test]
    fn master_key_round_trips_through_base64() {
        let master = MasterKey::from_bytes([7u8; KEY_LEN]);
        let text = master.to_base64();
        let back = MasterKey::from_base64(&format!("  {text}\n")).unwrap();
        let sealed = master.seal_key().seal(b"s", b"id").unwrap();
        assert_eq!(back.seal_key().open(&sealed, b"id").unwrap().expose(), "s");
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
    }

    #[test]
    fn derived_keys_are_independent_of_each_other() {
        let master = MasterKey::from_bytes([1u8; KEY_LEN]);
        assert_ne!(master.derive(SEAL_LABEL), master.derive(TOKEN_LABEL));
        assert_ne!(master.derive(SEAL_LABEL), [1u8; KEY_LEN]);
    }

    #[test]
    fn generated_access_keys_look_like_aws_keys() {
        let (id, secret) = generate_access_key();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AKIA"));
        assert!(is_access_key_id(&id));
        assert!(id[4..].bytes().all(|b| KEY_ID_ALPHABET.contains(&b)));
        assert_eq!(secret.expose().len(), SECRET_LEN);
        let (id2, secret2) = generate_access_key();
        assert_ne!(id, id2);
        assert_ne!(secret, secret2);
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn access_key_id_shape() {
        assert!(is_access_key_id("AKIAIOSFODNN7EXAMPLE"));
        assert!(is_access_key_id("berthroot0000001"));
        assert!(!is_access_key_id("short"));
        assert!(!is_access_key_id("AKIA/../etc/passwd00"));
        assert!(!is_access_key_id(&"A".repeat(129)));
    }
}
