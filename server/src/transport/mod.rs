//! Drivers: the bytes on sockets and WebSockets. Each hands whole SIP messages to the hub.

pub mod client_addr;
pub mod ims;
pub mod phones;
pub mod tls;
pub mod ws;
