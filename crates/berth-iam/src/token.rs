//! Registry authorization tokens: what `GetAuthorizationToken` issues and `/v2/` accepts.
//!
//! A token is the password half of `AWS:<password>` Basic credentials, shaped
//! `b1.<payload>.<mac>`: the payload (base64url JSON) names the access key and the validity
//! window, the MAC is HMAC-SHA256 under a key derived from the master key. Tokens are
//! stateless, so any replica that shares the master key verifies them; the server revokes one
//! by checking that its access key still exists.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::keys::{KEY_LEN, Secret};

/// The format marker of the current token version.
const PREFIX: &str = "b1";
/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Clock skew tolerated between replicas for a token's start.
const SKEW: Duration = Duration::from_secs(5 * 60);

/// Why a token is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a token of ours.
    #[error("the token is malformed")]
    Malformed,
    /// The MAC does not verify: forged, altered, or signed under another master key.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// Past its expiry.
    #[error("the token expired at {expired_at} (seconds since the epoch)")]
    Expired {
        /// When it expired, in seconds since the Unix epoch.
        expired_at: u64,
    },
    /// Issued in the future (clocks disagree by more than the tolerated skew).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The token cannot be issued (key id too long, time out of range).
    #[error("cannot issue a token: {0}")]
    Issue(&'static str),
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The access key the token was issued to.
    pub access_key_id: String,
    /// When it was issued.
    pub issued_at: SystemTime,
    /// When it stops being valid.
    pub expires_at: SystemTime,
    /// Which generation of the access key it was issued to (the server uses the key's
    /// creation time), so a key deleted and created again under the same id does not bring
    /// back the old key's tokens.
    pub key_version: u64,
    /// What the token is limited to (a download URL's one blob), if anything: the holder of
    /// a scoped token may do nothing else.
    pub scope: Option<String>,
}

/// The longest scope a token may carry.
pub const MAX_SCOPE_LEN: usize = 384;

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The password half of the Basic credentials.
    pub password: Secret,
    /// When it stops being valid.
    pub expires_at: SystemTime,
}

impl IssuedToken {
    /// The `authorizationToken` of `GetAuthorizationToken`: `base64("AWS:<password>")`.
    pub fn authorization_token(&self) -> String {
        STANDARD.encode(format!("AWS:{}", self.password.expose()))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    /// Access key id.
    k: String,
    /// Issued at, seconds since the epoch.
    i: u64,
    /// Expires at, seconds since the epoch.
    e: u64,
    /// Key version.
    #[serde(default)]
    v: u64,
    /// Scope, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
}

/// Signs and verifies tokens.
pub struct TokenKey([u8; KEY_LEN]);

impl TokenKey {
    /// A token key from raw bytes (normally derived from the master key).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> TokenKey {
        TokenKey(bytes)
    }

    fn mac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }

    /// Issues a token for `access_key_id`, valid from `now` for `ttl`, with the caller's
    /// whole authority.
    pub fn issue(
        &self,
        access_key_id: &str,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<IssuedToken, TokenError> {
        self.issue_scoped(access_key_id, 0, None, now, ttl)
    }

    /// Issues a token for version `key_version` of the access key, limited to `scope` (when
    /// given; the server decides what a scope allows).
    pub fn issue_scoped(
        &self,
        access_key_id: &str,
        key_version: u64,
        scope: Option<&str>,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<IssuedToken, TokenError> {
        if access_key_id.is_empty() || access_key_id.len() > 128 {
            return Err(TokenError::Issue(
                "the access key id must be 1 to 128 bytes",
            ));
        }
        if scope.is_some_and(|s| s.is_empty() || s.len() > MAX_SCOPE_LEN) {
            return Err(TokenError::Issue("the scope must be 1 to 384 bytes"));
        }
        let issued = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TokenError::Issue("the clock is before 1970"))?
            .as_secs();
        let expires = issued
            .checked_add(ttl.as_secs())
            .ok_or(TokenError::Issue("the lifetime is out of range"))?;
        let payload = Payload {
            k: access_key_id.to_owned(),
            i: issued,
            e: expires,
            v: key_version,
            s: scope.map(str::to_owned),
        };
        let json = serde_json::to_vec(&payload)
            .map_err(|_| TokenError::Issue("the payload does not serialize"))?;
        let mut text = format!("{PREFIX}.{}", URL_SAFE_NO_PAD.encode(json));
        let tag = hmac::sign(&self.mac_key(), text.as_bytes());
        text.push('.');
        text.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
        // Every token issued must verify: claims that JSON-escape long (control characters)
        // could otherwise make one longer than `verify` accepts (found by fuzzing).
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Issue(
                "the claims make a token longer than a registry password may be",
            ));
        }
        Ok(IssuedToken {
            password: Secret::new(text),
            expires_at: UNIX_EPOCH + Duration::from_secs(expires),
        })
    }

    /// Verifies a token's MAC (in constant time) and validity window at `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<TokenClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (prefix, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if prefix != PREFIX {
            return Err(TokenError::Malformed);
        }
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.mac_key(), signed.as_bytes(), &mac)
            .map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let p: Payload = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if now_secs >= p.e {
            return Err(TokenError::Expired { expired_at: p.e });
        }
        if p.i > now_secs.saturating_add(SKEW.as_secs()) {
            return Err(TokenError::NotYetValid);
        }
        Ok(TokenClaims {
            access_key_id: p.k,
            issued_at: UNIX_EPOCH + Duration::from_secs(p.i),
            expires_at: UNIX_EPOCH + Duration::from_secs(p.e),
            key_version: p.v,
            scope: p.s,
        })
    }
}

impl Drop for TokenKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// Regression (fuzz target `registry_token`): an access key id of control characters, which
    /// JSON-escape to six bytes each, made a token `verify` refused as too long.
    #[test]
    fn every_token_issued_verifies_or_is_refused_at_issue() {
        let key = TokenKey::from_bytes([7; 32]);
        for id in ["\0".repeat(116), "\u{1}".repeat(128), "A".repeat(128)] {
            for scope in [None, Some("\u{2}".repeat(MAX_SCOPE_LEN))] {
                if let Ok(t) = key.issue_scoped(&id, 1, scope.as_deref(), t0(), HOUR) {
                    let claims = key.verify(t.password.expose(), t0()).unwrap();
                    assert_eq!(claims.access_key_id, id);
                }
            }
        }
        assert!(key.issue(&"\0".repeat(116), t0(), HOUR).is_err());
    }

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn token_is_valid_for_its_lifetime_only() {
        let key = TokenKey::from_bytes([3u8; KEY_LEN]);
        let issued = key.issue("AKIAEXAMPLE000000000", t0(), 12 * HOUR).unwrap();
        assert_eq!(issued.expires_at, t0() + 12 * HOUR);
        let pw = issued.password.expose();
        let claims = key.verify(pw, t0() + 11 * HOUR).unwrap();
        assert_eq!(claims.access_key_id, "AKIAEXAMPLE000000000");
        assert_eq!(claims.issued_at, t0());
        assert!(matches!(
            key.verify(pw, t0() + 12 * HOUR),
            Err(TokenError::Expired { .. })
        ));
        assert!(matches!(
            key.verify(pw, t0() - HOUR),
            Err(TokenError::NotYetValid)
        ));
        // Within the skew a slightly early clock still accepts it.
        assert!(key.verify(pw, t0() - Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn scoped_tokens_carry_their_scope_under_the_mac() {
        let key = TokenKey::from_bytes([3u8; KEY_LEN]);
        let whole = key.issue("AKIAEXAMPLE000000000", t0(), HOUR).unwrap();
        let claims = key.verify(whole.password.expose(), t0()).unwrap();
        assert_eq!(claims.scope, None);
        let scope = format!("{}@sha256:{}", "a/".repeat(120), "0".repeat(64));
        let scoped = key
            .issue_scoped("AKIAEXAMPLE000000000", 7, Some(&scope), t0(), HOUR)
            .unwrap();
        assert!(scoped.password.expose().len() <= MAX_TOKEN_LEN);
        let claims = key.verify(scoped.password.expose(), t0()).unwrap();
        assert_eq!(claims.scope.as_deref(), Some(scope.as_str()));
        assert_eq!(claims.key_version, 7);
        let too_long = "x".repeat(MAX_SCOPE_LEN + 1);
        assert!(matches!(
            key.issue_scoped("AKIAEXAMPLE000000000", 7, Some(&too_long), t0(), HOUR),
            Err(TokenError::Issue(_))
        ));
    }

    #[test]
    fn authorization_token_is_basic_credentials_for_user_aws() {
        let key = TokenKey::from_bytes([3u8; KEY_LEN]);
        let issued = key.issue("AKIAEXAMPLE000000000", t0(), HOUR).unwrap();
        let decoded = STANDARD.decode(issued.authorization_token()).unwrap();
        let text = String::from_utf8(decoded).unwrap();
        let (user, pw) = text.split_once(':').unwrap();
        assert_eq!(user, "AWS");
        assert_eq!(pw, issued.password.expose());
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let key = TokenKey::from_bytes([3u8; KEY_LEN]);
        let other = TokenKey::from_bytes([4u8; KEY_LEN]);
        let pw = key
            .issue("AKIAEXAMPLE000000000", t0(), HOUR)
            .unwrap()
            .password;
        let pw = pw.expose();
        assert!(matches!(
            other.verify(pw, t0()),
            Err(TokenError::BadSignature)
        ));
        // Payload swapped for another key's claims, MAC kept.
        let (_, mac) = pw.rsplit_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD
            .encode(br#"{"k":"AKIAADMIN00000000000","i":1800000000,"e":1900000000}"#);
        let forged = format!("b1.{forged_payload}.{mac}");
        assert!(matches!(
            key.verify(&forged, t0()),
            Err(TokenError::BadSignature)
        ));
        for bad in ["", "b1", "b1..", "b2.e30.AAAA", "x.y.z", "b1.!!.??"] {
            assert!(key.verify(bad, t0()).is_err(), "{bad:?}");
        }
        assert!(matches!(
            key.verify(&"a".repeat(MAX_TOKEN_LEN + 1), t0()),
            Err(TokenError::Malformed)
        ));
    }

    #[test]
    fn issue_rejects_bad_input() {
        let key = TokenKey::from_bytes([3u8; KEY_LEN]);
        assert!(key.issue("", t0(), HOUR).is_err());
        assert!(key.issue(&"A".repeat(200), t0(), HOUR).is_err());
        assert!(key.issue("AKIA", t0(), Duration::MAX).is_err());
    }
}
