//! Access-token logic shared by imsgw's SIP edge and its WAF: ES256 signing keys with `kid`
//! rotation ([`KeyRing`]), minting short-lived JWT access tokens ([`Minter`]), parsing the
//! `Authorization: Bearer` header of RFC 8898 / RFC 6750 / TS 24.371 ([`parse_bearer`]), and
//! verifying tokens from our own WAF or from configured external issuers ([`Verifier`]), and
//! checking proofs of possession for sender-constrained tokens ([`pop`]: RFC 9449 DPoP proofs
//! and imsgw's SIP proofs; a bound token carries `cnf.jkt`, [`Claims::cnf_jkt`]).
//!
//! The crate does no network I/O and keeps no clock: every time-dependent call takes `now` in
//! Unix seconds, and external issuers' JWK Sets are handed in as data by a driver that fetched
//! them. The only file I/O is in the key-directory functions of [`KeyRing`] and in
//! [`check_secret_file`].
//!
//! Secrets never reach `Debug`, `Display` or an error: tokens travel as [`AccessToken`], every
//! other secret (HMAC keys here; client secrets, flow keys and OAuth `state` in imsgw) as
//! [`Secret`], and private keys stay inside [`KeyRing`], whose `Debug` lists `kid`s only.
//!
//! The `impu` claim is an [`imsgw_sip::Impu`]: a token whose IMPU is not canonical is refused
//! ([`TokenError::BadImpu`]) and none is minted ([`MintError::BadImpu`]). That type is all this
//! crate takes from `imsgw-sip`.
//!
//! It must not know about SIP messages, HTTP, revocation lists, replay state or how identities
//! are mapped; the edge (matching the REGISTER's AOR to `impu`, capping `Expires`, handing the
//! request's method, Request-URI, Call-ID and CSeq to [`pop::verify_proof`], remembering nonces
//! and proof ids) and the WAF own those.

mod bearer;
mod cache;
mod claims;
mod config;
mod error;
mod external;
mod keydir;
mod keys;
mod kid;
mod mint;
mod pem;
pub mod pop;
mod secret;
mod verify;

#[cfg(test)]
mod testutil;

pub use bearer::{
    BearerCredentials, BearerError, CodeCredentials, parse_bearer, parse_bearer_credentials,
};
pub use claims::Claims;
pub use config::{ConfigError, ExternalIssuer, VerifierConfig};
pub use error::TokenError;
pub use external::JwksError;
pub use jsonwebtoken::Algorithm;
pub use jsonwebtoken::jwk::JwkSet;
pub use keydir::{check_secret_file, read_secret_file};
pub use keys::{KeyError, KeyRing};
pub use mint::{MintError, MintRequest, Minter, MinterConfig, new_jti};
pub use secret::{AccessToken, Secret};
pub use verify::{Job, Lookup, Verdict, Verified, Verifier};
