//! imsgw: a WebRTC IMS gateway. See DESIGN in the repository README for the roles.
//!
//! Layers, codec first: `imsgw_sip` (messages) → [`edge`] (proxy logic, no I/O) →
//! [`hub`] and [`transport`] (tasks and sockets) → [`app`] (assembly) → `main`.

pub mod app;
pub mod config;
pub mod edge;
pub mod hub;
pub mod media;
pub mod metrics;
pub mod oidc;
pub mod peers;
pub mod secret;
pub mod transport;
pub mod waf;
pub mod wwsf;
