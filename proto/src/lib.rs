//! Wire and disk types of edgegate.
//!
//! This crate owns every type that crosses a wire or a disk: the permission
//! bundle the cloud signs for one device, the ticket that admits one client
//! key, the signed envelope around both, deny reasons and levels, and the
//! tunnel frames. Encoding is postcard; `README.md` beside this crate is the
//! byte-level specification.
//!
//! It does no I/O and reads no clock: verification takes bytes and trusted
//! keys and returns values (`VerifiedBundle`, `VerifiedTicket`) that only the
//! verifying code can construct. Everything that depends on a device's state
//! (serial ordering, expiry against a time floor, device id) is the store's
//! and the evaluator's business, not this crate's.

pub mod audit;
pub mod authority;
pub mod bundle;
pub mod codec;
pub mod control;
pub mod enrollment;
pub mod envelope;
pub mod frame;
pub mod keys;
pub mod reason;
pub mod relay;
pub mod ticket;
pub mod time_floor;

pub use authority::{Authority, KeyRole, VerifiedStatement};
pub use bundle::{Bundle, VerifiedBundle};
pub use enrollment::{Enrollment, VerifiedEnrollment};
pub use envelope::{EnvelopeError, Purpose, TrustPolicy};
pub use frame::Frame;
pub use keys::PublicKey;
pub use reason::{DenyReason, Level};
pub use ticket::{Ticket, VerifiedTicket};

/// Seconds since the Unix epoch, UTC. Every timestamp on the wire uses it.
pub type UnixTime = u64;
