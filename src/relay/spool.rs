//! The relay's bundle spool (DESIGN §8): the newest signed bundle per
//! device, kept in sled until its router takes it, with the router's
//! answer once it gave one. The relay's own check (signatures under its
//! trusted keys, a serial above the one kept) only spares it from storing
//! junk; the router applies its own rules (DESIGN §3) on delivery.
//!
//! On disk: tree `bundles`, device id → the envelope bytes as pushed
//! (self-describing: serial and device are re-read by verifying them);
//! tree `answers`, device id → the postcard of the router's `PushResult`
//! for exactly those bytes.

use edgegate_proto::codec;
use edgegate_proto::frame::PushResult;
use edgegate_proto::relay::{RelayRefusal, SpooledBundle};
use edgegate_proto::{TrustPolicy, VerifiedBundle};
use std::path::Path;

/// The sled page cache: the spool holds a few bundles' worth of hot data.
const CACHE_BYTES: u64 = 4 << 20;

/// What became of an offered bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Kept: newer than what was there (or the first).
    Stored,
    /// The very bytes kept already; the router's answer, if it gave one.
    Unchanged(Option<PushResult>),
}

pub(crate) struct Spool {
    db: sled::Db,
    bundles: sled::Tree,
    answers: sled::Tree,
}

impl Spool {
    /// Open (or create) the spool under `state_dir`.
    pub(crate) fn open(state_dir: &Path) -> Result<Spool, String> {
        let db = sled::Config::new()
            .path(state_dir.join("spool"))
            .cache_capacity(CACHE_BYTES)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|e| format!("opening the spool: {e}"))?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| format!("spool tree {name}: {e}"))
        };
        Ok(Spool {
            bundles: tree("bundles")?,
            answers: tree("answers")?,
            db,
        })
    }

    /// Offer `bytes` (verified: `bundle`) for its device.
    pub(crate) fn offer(
        &self,
        bundle: &VerifiedBundle,
        bytes: &[u8],
        trust: &TrustPolicy,
    ) -> Result<Offer, (RelayRefusal, String)> {
        let (device, serial) = (&bundle.bundle().device_id, bundle.bundle().serial);
        let failed = |e: sled::Error| (RelayRefusal::Protocol, format!("spool: {e}"));
        if let Some(old) = self.bundles.get(device).map_err(failed)? {
            if old.as_ref() == bytes {
                return Ok(Offer::Unchanged(self.answer(device)));
            }
            // One that no longer verifies (the relay's keys changed) counts
            // as absent.
            if let Ok(kept) = VerifiedBundle::verify(&old, trust) {
                let kept = kept.bundle().serial;
                if serial <= kept {
                    let why = format!(
                        "serial {serial} is not above serial {kept}, the one kept for {device:?}"
                    );
                    return Err((RelayRefusal::Rollback, why));
                }
            }
        }
        self.bundles.insert(device, bytes).map_err(failed)?;
        self.answers.remove(device).map_err(failed)?;
        self.db.flush().map_err(failed)?;
        Ok(Offer::Stored)
    }

    /// The bundle kept for `device` and its serial, if its router has not
    /// answered it yet.
    pub(crate) fn pending(&self, device: &str, trust: &TrustPolicy) -> Option<(u64, Vec<u8>)> {
        if self.answer(device).is_some() {
            return None;
        }
        let bytes = self.bundles.get(device).ok()??.to_vec();
        let serial = VerifiedBundle::verify(&bytes, trust).ok()?.bundle().serial;
        Some((serial, bytes))
    }

    /// Record the router's answer to `bytes` (if they are still the ones
    /// kept: a newer push may have replaced them meanwhile).
    pub(crate) fn answered(&self, device: &str, bytes: &[u8], answer: &PushResult) {
        let still = self.bundles.get(device).ok().flatten();
        if still.as_deref() != Some(bytes) {
            return;
        }
        if let Err(e) = self.answers.insert(device, codec::encode(answer)) {
            tracing::warn!("spool: recording the answer of {device}: {e}");
        }
        let _ = self.db.flush();
    }

    fn answer(&self, device: &str) -> Option<PushResult> {
        let bytes = self.answers.get(device).ok()??;
        codec::decode_exact(&bytes).ok()
    }

    /// Every spooled bundle, by device id.
    pub(crate) fn list(&self, trust: &TrustPolicy) -> Vec<SpooledBundle> {
        self.bundles
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(device, bytes)| {
                let device = String::from_utf8(device.to_vec()).ok()?;
                let serial = VerifiedBundle::verify(&bytes, trust).ok()?.bundle().serial;
                let answer = self.answer(&device);
                Some(SpooledBundle {
                    device,
                    serial,
                    answer,
                })
            })
            .collect()
    }
}
