//! The statuses the edge answers with itself, as values rather than `(u16, &str)` pairs
//! (RFC 3261 §21). A status the edge makes is always one of these constants.
//!
//! Owns: codes and reason phrases. Must not touch: anything else.

/// A final or provisional status the edge sends on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: &'static str,
}

impl Status {
    pub const TRYING: Status = Status::new(100, "Trying");
    pub const OK: Status = Status::new(200, "OK");
    pub const BAD_REQUEST: Status = Status::new(400, "Bad Request");
    pub const UNAUTHORIZED: Status = Status::new(401, "Unauthorized");
    pub const FORBIDDEN: Status = Status::new(403, "Forbidden");
    pub const NOT_FOUND: Status = Status::new(404, "Not Found");
    pub const PROXY_AUTH_REQUIRED: Status = Status::new(407, "Proxy Authentication Required");
    pub const REQUEST_TIMEOUT: Status = Status::new(408, "Request Timeout");
    pub const UNSUPPORTED_MEDIA_TYPE: Status = Status::new(415, "Unsupported Media Type");
    pub const UNSUPPORTED_URI_SCHEME: Status = Status::new(416, "Unsupported URI Scheme");
    pub const BAD_EXTENSION: Status = Status::new(420, "Bad Extension");
    pub const FLOW_FAILED: Status = Status::new(430, "Flow Failed");
    pub const NO_TRANSACTION: Status = Status::new(481, "Call/Transaction Does Not Exist");
    pub const BUSY_HERE: Status = Status::new(486, "Busy Here");
    pub const REQUEST_TERMINATED: Status = Status::new(487, "Request Terminated");
    pub const NOT_ACCEPTABLE_HERE: Status = Status::new(488, "Not Acceptable Here");
    pub const LOOP_DETECTED: Status = Status::new(482, "Loop Detected");
    pub const TOO_MANY_HOPS: Status = Status::new(483, "Too Many Hops");
    pub const SERVER_ERROR: Status = Status::new(500, "Server Internal Error");
    pub const SERVICE_UNAVAILABLE: Status = Status::new(503, "Service Unavailable");
    pub const VERSION_NOT_SUPPORTED: Status = Status::new(505, "Version Not Supported");

    const fn new(code: u16, reason: &'static str) -> Status {
        Status { code, reason }
    }

    /// The media engine's refusals, as the statuses it may name (488 or 503).
    pub fn from_code(code: u16) -> Option<Status> {
        match code {
            486 => Some(Self::BUSY_HERE),
            488 => Some(Self::NOT_ACCEPTABLE_HERE),
            500 => Some(Self::SERVER_ERROR),
            503 => Some(Self::SERVICE_UNAVAILABLE),
            _ => None,
        }
    }
}
