//! The WAF's state: see the `imsgw-store` crate (the [`Store`] trait, its caps, the stores).

pub use imsgw_store::*;
