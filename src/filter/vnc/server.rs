//! The server->client half of the RFB handshake, observed (never modified)
//! so that the client half can be framed exactly: the server's version, the
//! security types it offers (3.7/3.8) or imposes (3.3), the VNC-auth
//! challenge and the security result. Everything after the handshake
//! (ServerInit, framebuffer updates) is ignored.

use super::{Facts, Version};
use crate::filter::fill;
use crate::filter::FilterViolation::{self, Malformed, Unsupported};

/// What the observer waits for next.
#[derive(Default)]
pub(super) enum Step {
    /// The 12-byte ProtocolVersion.
    #[default]
    Version,
    /// 3.3: the u32 security type; 3.7/3.8: the u8 count of types.
    Security,
    /// 3.7/3.8: the list of `n` offered types.
    Types(usize),
    /// 3.7/3.8: the client's choice decides what comes next.
    AfterChoice,
    /// The 16-byte VNC-auth challenge.
    Challenge,
    /// The u32 SecurityResult.
    Result,
    /// Handshake over (or failed): nothing more to learn.
    Done,
}

/// Incremental parser of the server's handshake bytes.
#[derive(Default)]
pub(super) struct ServerSide {
    step: Step,
    buf: Vec<u8>,
}

impl ServerSide {
    /// Learns from server bytes; protocol errors are recorded in `facts`.
    pub(super) fn observe(&mut self, facts: &mut Facts, mut input: &[u8]) {
        while !input.is_empty() && !matches!(self.step, Step::Done) {
            let want = match self.want(facts) {
                Ok(n) => n,
                Err(e) => return self.fail(facts, e),
            };
            if fill(&mut self.buf, want, &mut input) {
                let bytes = std::mem::take(&mut self.buf);
                match self.learn(facts, &bytes) {
                    Ok(next) => self.step = next,
                    Err(e) => return self.fail(facts, e),
                }
            }
        }
    }

    fn fail(&mut self, facts: &mut Facts, e: FilterViolation) {
        facts.server_error.get_or_insert(e);
        self.step = Step::Done;
    }

    /// Bytes needed for the current step.
    fn want(&self, facts: &Facts) -> Result<usize, FilterViolation> {
        Ok(match self.step {
            Step::Version => 12,
            Step::Security => match facts.version {
                None => return Err(Malformed("server handshake before the client's version")),
                Some(Version::V3_3) => 4,
                Some(_) => 1,
            },
            Step::Types(n) => n,
            Step::AfterChoice => {
                return Err(Malformed(
                    "server handshake before the client's security type",
                ))
            }
            Step::Challenge => 16,
            Step::Result => 4,
            Step::Done => 0,
        })
    }

    /// Applies a complete unit; returns the next step.
    fn learn(&mut self, facts: &mut Facts, b: &[u8]) -> Result<Step, FilterViolation> {
        Ok(match self.step {
            Step::Version => {
                facts.server_version = Some(super::parse_version(b)?);
                Step::Security
            }
            Step::Security if facts.version == Some(Version::V3_3) => {
                match u32::from_be_bytes(b.try_into().expect("4 bytes")) {
                    0 => fail(facts),
                    t @ (1 | 2) => {
                        facts.security = Some(t as u8);
                        after_security(facts, t as u8)
                    }
                    _ => return Err(Unsupported("VNC security type from a 3.3 server")),
                }
            }
            Step::Security => match b[0] {
                0 => fail(facts),
                n => Step::Types(usize::from(n)),
            },
            Step::Types(_) => {
                facts.offered = Some(b.to_vec());
                Step::AfterChoice
            }
            Step::Challenge => {
                facts.challenge_seen = true;
                Step::Result
            }
            Step::Result => {
                let ok = b == [0, 0, 0, 0];
                facts.result = Some(ok);
                if ok {
                    Step::Done
                } else {
                    fail(facts)
                }
            }
            Step::AfterChoice | Step::Done => Step::Done,
        })
    }

    /// The client chose `t` (3.7/3.8): the server's next message follows.
    pub(super) fn client_chose(&mut self, facts: &Facts, t: u8) {
        if matches!(self.step, Step::AfterChoice) {
            self.step = after_security(facts, t);
        }
    }
}

/// A failed handshake: a reason may follow; the server then closes.
fn fail(facts: &mut Facts) -> Step {
    facts.failed = true;
    Step::Done
}

/// What the server sends once security type `t` is settled.
fn after_security(facts: &Facts, t: u8) -> Step {
    match (t, facts.version) {
        (2, _) => Step::Challenge,
        (_, Some(Version::V3_8)) => Step::Result,
        _ => Step::Done,
    }
}
