//! `berth-iam` — who may do what on `berth serve`, with no I/O runtime.
//!
//! - [`policy`]: IAM policy documents (identity, repository and registry policies) parsed,
//!   validated and evaluated the way AWS does (explicit deny wins, then any allow).
//! - [`sigv4`]: verification of AWS Signature Version 4 requests (the ECR API).
//! - [`token`]: the registry's authorization tokens (`GetAuthorizationToken`), HMAC-signed,
//!   self-describing, bound to an access key and an expiry.
//! - [`dates`]: the date formats of SigV4 and of policy conditions.
//! - [`keys`]: the server's master key, the keys derived from it, access-key generation and
//!   sealing of stored secrets.

pub mod dates;
pub mod keys;
pub mod policy;
pub mod sigv4;
pub mod token;
