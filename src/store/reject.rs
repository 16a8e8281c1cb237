//! Why a bundle was refused: one enum for every rejection on the accept path
//! (verification, policy compile, and the store's own checks), so the daemon,
//! the control socket and the audit log report the same stable codes.

use crate::duration::format_time;
use edgegate_proto::bundle::BundleError;
use edgegate_proto::UnixTime;
use std::fmt;

/// Why a bundle was not accepted. The stored state is untouched in every case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// The envelope or body failed verification (signatures, size, format).
    Invalid(BundleError),
    /// The bundle verified but does not compile into a policy (the caller's check).
    InvalidPolicy(crate::policy::CompileError),
    /// The bundle is for another device.
    WrongDevice {
        /// This device's id.
        expected: String,
        /// The id the bundle names.
        got: String,
    },
    /// The serial is not strictly greater than the stored one (an equal
    /// serial with different bytes included).
    Rollback {
        /// The stored serial.
        stored: u64,
        /// The offered serial.
        offered: u64,
    },
    /// `not_after` lies before the device's notion of now (wall clock, but
    /// never below the time floor).
    Expired {
        /// The bundle's `not_after`.
        not_after: UnixTime,
        /// The instant it was checked against.
        now: UnixTime,
    },
    /// `issued_at` lies beyond a plausible wall clock by more than the
    /// allowed skew (`edgegate_proto::time_floor`): the signer's clock, or
    /// this router's, is wrong, and the bundle's dates cannot be trusted.
    FutureDated {
        /// The bundle's `issued_at`.
        issued_at: UnixTime,
        /// The latest `issued_at` accepted now.
        limit: UnixTime,
    },
    /// The write or the flush failed; the sender must not assume durability.
    Storage(String),
    /// The anti-rollback watermark could not be read: no bundle is accepted
    /// until an operator runs `edgegate store reset-watermark`.
    WatermarkUnreadable(String),
}

impl RejectReason {
    /// Stable short name for audit records and wire answers.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::Invalid(e) => e.code(),
            RejectReason::InvalidPolicy(_) => "invalid-policy",
            RejectReason::WrongDevice { .. } => "wrong-device",
            RejectReason::Rollback { .. } => "rollback",
            RejectReason::Expired { .. } => "expired",
            RejectReason::FutureDated { .. } => "future-dated",
            RejectReason::Storage(_) => "storage-error",
            RejectReason::WatermarkUnreadable(_) => "watermark-unreadable",
        }
    }
}

impl From<BundleError> for RejectReason {
    fn from(e: BundleError) -> Self {
        RejectReason::Invalid(e)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code();
        match self {
            RejectReason::Invalid(e) => write!(f, "{code}: {e}"),
            RejectReason::InvalidPolicy(e) => write!(f, "{code}: {}", one_line(&e.to_string())),
            RejectReason::WrongDevice { expected, got } => {
                write!(
                    f,
                    "{code}: bundle is for device {got:?}, this is {expected:?}"
                )
            }
            RejectReason::Rollback { stored, offered } => write!(
                f,
                "{code}: serial {offered} is not greater than stored serial {stored}"
            ),
            RejectReason::Expired { not_after, now } => {
                let (not_after, now) = (format_time(*not_after), format_time(*now));
                write!(
                    f,
                    "{code}: the bundle expired at {not_after}, it is now {now}"
                )
            }
            RejectReason::FutureDated { issued_at, limit } => {
                let (issued_at, limit) = (format_time(*issued_at), format_time(*limit));
                write!(
                    f,
                    "{code}: the bundle is issued at {issued_at}, later than {limit} \
                     (the wall clock plus a day); check the signer's clock and this router's"
                )
            }
            RejectReason::Storage(m) => write!(f, "{code}: {}", one_line(m)),
            RejectReason::WatermarkUnreadable(m) => write!(
                f,
                "{code}: {}; no bundle is accepted until an operator runs \
                 `edgegate store reset-watermark --config FILE` with the daemon stopped",
                one_line(m)
            ),
        }
    }
}

impl std::error::Error for RejectReason {}

/// Messages from elsewhere may carry newlines; a reason is always one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
