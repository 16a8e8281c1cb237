//! The key statement in force: which keys hold each role (`edgegate_proto::
//! authority`), stored durably beside the bundle, and what accepting a new
//! statement does to the device's state.
//!
//! Tree `keys` of the same sled database:
//! - `current`: the envelope of the statement in force;
//! - `chain/<version, u64 BE>`: every statement that rotated the root, so
//!   that opening can follow the config's root keys to the current root;
//! - `version`: the highest version accepted (u64 BE): a statement's
//!   version is used once, even if the stored bytes later fail to verify;
//! - `grandfathered`: the bundle in force whose signer a statement removed
//!   (its digest) and the bundle role that signed it: it stays in force,
//!   across restarts, until a bundle signed by a current key replaces it.
//!
//! Opening re-checks the stored statements from the config's root keys (the
//! chain, then `current`); if any fails, the statements are treated as
//! absent and the config's keys act as root and every role, as before any
//! statement arrived. Their version floor still holds.
//!
//! A statement with a recovery resets the serial (and drops the bundle in
//! force) and/or the time floor. The watermark is written before sled for
//! a recovery (it may then lag sled, never lead it: `watermark.rs`), so a
//! crash between the two leaves the old state and an unacknowledged push.

use super::*;
use edgegate_proto::authority::{Authority, Recovery, RoleKeys, StatementClock, StatementError};
use edgegate_proto::{KeyRole, VerifiedStatement};
use std::sync::Arc;

const TREE_KEYS: &str = "keys";
const KEY_CURRENT: &[u8] = b"current";
const KEY_VERSION: &[u8] = b"version";
const KEY_GRANDFATHERED: &[u8] = b"grandfathered";
const CHAIN: &[u8] = b"chain/";
/// Most root rotations kept; a longer chain fails closed (legacy keys).
const MAX_CHAIN: usize = 64;

/// The authority in force and what backs it.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    /// The config's keys: root when no statement is in force.
    pub(super) roots: TrustPolicy,
    pub(super) authority: Arc<Authority>,
    /// SHA-256 of the statement in force.
    pub(super) digest: Option<[u8; 32]>,
    /// The next statement's version must exceed this.
    pub(super) version_floor: u64,
    /// The bundle in force (its digest) kept under a removed bundle role.
    pub(super) grandfathered: Option<([u8; 32], TrustPolicy)>,
}

/// What accepting a statement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysApplied {
    /// Stored (durably) and in force.
    Installed {
        /// Its version.
        version: u64,
        /// Whether it changed the root keys.
        root_rotated: bool,
        /// The bundle in force was dropped (a serial reset): the gateway
        /// fails closed until the next bundle.
        dropped_bundle: bool,
        /// The bundle in force is no longer signed by a current bundle key
        /// and is kept until one replaces it.
        grandfathered: bool,
        /// The recovery it carried, if any, as `(serial, floor)` before.
        recovered: Option<(Option<u64>, UnixTime)>,
    },
    /// The statement in force, byte for byte: nothing done.
    Unchanged {
        /// Its version.
        version: u64,
    },
}

/// Why a statement was refused: the statement's own error, or the store's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysRejected {
    /// Verification against the authority in force failed.
    #[error("{}: {}", .0.code(), .0)]
    Statement(StatementError),
    /// The write or the flush failed, or the store is sealed.
    #[error("{0}")]
    Store(RejectReason),
}

impl KeysRejected {
    /// Stable short name for audit records and wire answers.
    pub fn code(&self) -> &'static str {
        match self {
            KeysRejected::Statement(e) => e.code(),
            KeysRejected::Store(r) => r.code(),
        }
    }
}

pub(super) fn tree(db: &sled::Db) -> sled::Result<sled::Tree> {
    db.open_tree(TREE_KEYS)
}

/// Re-check the stored statements from `roots`; see the module doc.
/// `acknowledged` is the newest version known to have been accepted (the
/// watermark's, or the running store's): a stored statement older than it
/// (sled came back older, `watermark.rs`) is not used either, so an older
/// statement cannot return.
pub(super) fn load(
    tree: &sled::Tree,
    roots: &TrustPolicy,
    acknowledged: u64,
    warnings: &mut Vec<String>,
) -> Keys {
    let version_floor = read_version(tree).max(acknowledged);
    let mut keys = Keys {
        roots: roots.clone(),
        authority: Arc::new(Authority::legacy(roots.clone())),
        digest: None,
        version_floor,
        grandfathered: None,
    };
    let absent = |why: String| {
        format!(
            "stored key statements: {why}; treated as absent: the configured trusted_keys \
             act as root and every role (statement versions up to {version_floor} stay refused)"
        )
    };
    match walk(tree, roots) {
        Ok(None) => {}
        Ok(Some((authority, _))) if authority.version() < version_floor => {
            warnings.push(absent(format!(
                "the stored statement is version {}, version {version_floor} was acknowledged",
                authority.version()
            )));
        }
        Ok(Some((authority, digest))) => {
            keys.authority = Arc::new(authority);
            keys.digest = Some(digest);
            keys.grandfathered = read_grandfathered(tree);
        }
        Err(why) => warnings.push(absent(why)),
    }
    keys
}

/// Follow the chain of root rotations from `roots`, then `current`.
fn walk(tree: &sled::Tree, roots: &TrustPolicy) -> Result<Option<(Authority, [u8; 32])>, String> {
    let Some(current) = tree.get(KEY_CURRENT).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let mut authority = Authority::legacy(roots.clone());
    for (n, entry) in tree.scan_prefix(CHAIN).enumerate() {
        let (_, raw) = entry.map_err(|e| e.to_string())?;
        if n >= MAX_CHAIN {
            return Err(format!("more than {MAX_CHAIN} root rotations"));
        }
        authority = step(&authority, &raw)?;
    }
    let last = step(&authority, &current)?;
    Ok(Some((last, Sha256::digest(&current).into())))
}

/// One stored statement checked against `a`: signatures, shape, and a
/// version not below `a`'s (the chain's last entry is `current` too).
fn step(a: &Authority, raw: &[u8]) -> Result<Authority, String> {
    let vs = a.follow(raw).map_err(|e| {
        format!(
            "a stored statement does not verify from version {}: {e}",
            a.version()
        )
    })?;
    let next = vs.authority();
    if next.version() < a.version() {
        return Err(format!("version {} after {}", next.version(), a.version()));
    }
    Ok(next.clone())
}

/// The highest statement version `db` records (for a new watermark).
pub(super) fn stored_version(db: &sled::Db) -> u64 {
    tree(db).map_or(0, |t| read_version(&t).min(u64::MAX - 1))
}

fn read_version(tree: &sled::Tree) -> u64 {
    match tree.get(KEY_VERSION) {
        Ok(Some(v)) => <[u8; 8]>::try_from(&v[..]).map_or(u64::MAX, u64::from_be_bytes),
        Ok(None) => 0,
        // Unreadable: no statement version can be trusted as fresh.
        Err(_) => u64::MAX,
    }
}

fn read_grandfathered(tree: &sled::Tree) -> Option<([u8; 32], TrustPolicy)> {
    let v = tree.get(KEY_GRANDFATHERED).ok()??;
    let digest: [u8; 32] = v.get(..32)?.try_into().ok()?;
    let rk: RoleKeys = edgegate_proto::codec::decode_exact(&v[32..]).ok()?;
    let threshold = usize::from(rk.threshold);
    Some((digest, TrustPolicy::new(rk.keys, threshold).ok()?))
}

fn encode_grandfathered(digest: &[u8; 32], t: &TrustPolicy) -> Vec<u8> {
    let rk = RoleKeys {
        keys: t.keys().to_vec(),
        threshold: u8::try_from(t.threshold()).unwrap_or(u8::MAX),
    };
    let mut out = digest.to_vec();
    out.extend(edgegate_proto::codec::encode(&rk));
    out
}

/// The rules of `Authority::advance`, and a version never used here (the
/// floor outlives statements that stopped verifying).
fn verify_next(
    keys: &Keys,
    bytes: &[u8],
    wall: UnixTime,
    floor: UnixTime,
) -> Result<VerifiedStatement, KeysRejected> {
    let clock = StatementClock { wall, floor };
    let vs = keys
        .authority
        .advance(bytes, clock)
        .map_err(KeysRejected::Statement)?;
    let version = vs.authority().version();
    if version <= keys.version_floor {
        return Err(KeysRejected::Statement(StatementError::Stale {
            current: keys.version_floor,
            offered: version,
        }));
    }
    Ok(vs)
}

/// What a verified statement changes, worked out before anything is written.
struct Plan {
    vs: VerifiedStatement,
    state: State,
    grandfathered: Option<([u8; 32], TrustPolicy)>,
    dropped_bundle: bool,
    recovered: Option<(Option<u64>, UnixTime)>,
}

impl Store {
    /// The authority in force: which keys verify each role's documents.
    pub fn authority(&self) -> Arc<Authority> {
        self.keys().authority.clone()
    }

    /// The keys that verify the bundle with `digest` (the bundle role, or
    /// the role it was signed under if a statement removed its signer).
    pub(super) fn bundle_trust(&self, digest: Option<[u8; 32]>) -> TrustPolicy {
        let k = self.keys();
        match &k.grandfathered {
            Some((d, t)) if Some(*d) == digest => t.clone(),
            _ => k.authority.role(KeyRole::Bundle).clone(),
        }
    }

    /// Accept `bytes` as the next key statement if the rules of
    /// `Authority::advance` allow and its version was never used here;
    /// durable before `Ok`. Blocks on `fsync`.
    pub fn accept_keys(&self, bytes: &[u8], wall: UnixTime) -> Result<KeysApplied, KeysRejected> {
        self.unsealed().map_err(KeysRejected::Store)?;
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let keys = self.keys().clone();
        if keys.digest == Some(digest) {
            let version = keys.authority.version();
            return Ok(KeysApplied::Unchanged { version });
        }
        let mut st = self.state();
        let vs = verify_next(&keys, bytes, wall, st.floor)?;
        let plan = self.plan(vs, &st, &keys, wall);
        self.write_keys(&plan)
            .map_err(|e| KeysRejected::Store(RejectReason::Storage(e.to_string())))?;
        // Only after the flush, as for bundles; the watermark records the
        // version only now (a recovery's early mark keeps the old one, so a
        // crash before sled's write leaves the statement deliverable again).
        *st = State {
            keys_version: plan.vs.authority().version(),
            ..plan.state
        };
        self.mark(&st);
        let done = KeysApplied::Installed {
            version: plan.vs.authority().version(),
            root_rotated: plan.vs.root_rotated(),
            dropped_bundle: plan.dropped_bundle,
            grandfathered: plan.grandfathered.is_some(),
            recovered: plan.recovered,
        };
        *self.keys_mut() = Keys {
            roots: keys.roots,
            authority: Arc::new(plan.vs.authority().clone()),
            digest: Some(digest),
            version_floor: plan.vs.authority().version(),
            grandfathered: plan.grandfathered,
        };
        Ok(done)
    }

    fn plan(&self, vs: VerifiedStatement, st: &State, keys: &Keys, wall: UnixTime) -> Plan {
        let mut state = *st;
        let recovery = vs.statement().recovery.clone();
        let recovered = recovery.as_ref().map(|_| (st.serial, st.floor));
        let mut dropped_bundle = false;
        if let Some(Recovery { serial, time_floor }) = recovery {
            if let Some(s) = serial {
                dropped_bundle = st.digest.is_some();
                state.serial = Some(s);
                state.digest = None;
                state.lost = None;
            }
            if let Some(f) = time_floor {
                state.floor = f;
                state.start_floor = f;
                state.start_wall = Some(wall);
            }
        }
        let grandfathered = state
            .digest
            .filter(|_| !self.in_force_verifies(vs.authority().role(KeyRole::Bundle)))
            .map(|d| (d, self.bundle_trust_of(keys, d)));
        Plan {
            vs,

            state,
            grandfathered,
            dropped_bundle,
            recovered,
        }
    }

    fn bundle_trust_of(&self, keys: &Keys, digest: [u8; 32]) -> TrustPolicy {
        match &keys.grandfathered {
            Some((d, t)) if *d == digest => t.clone(),
            _ => keys.authority.role(KeyRole::Bundle).clone(),
        }
    }

    /// Whether the bundle in force verifies under `trust`.
    fn in_force_verifies(&self, trust: &TrustPolicy) -> bool {
        match self.bundle.get(KEY_ENVELOPE) {
            Ok(Some(raw)) => VerifiedBundle::verify(&raw, trust).is_ok(),
            _ => false,
        }
    }

    /// The statement, the chain, the version floor, the grandfathered
    /// bundle and a recovery's serial and floor, in one transaction, then
    /// flush. A recovery moves the watermark down first.
    fn write_keys(&self, p: &Plan) -> Result<(), StoreError> {
        if p.recovered.is_some() {
            self.mark(&p.state);
        }
        let raw = p.vs.raw();
        let version = p.vs.authority().version().to_be_bytes();
        let chain = [CHAIN, &version[..]].concat();
        let grand = p
            .grandfathered
            .as_ref()
            .map(|(d, t)| encode_grandfathered(d, t));
        let serial = p.recovered.and(p.state.serial).map(u64::to_be_bytes);
        let floor = p.state.floor.to_be_bytes();
        let r: TransactionResult<(), ()> =
            (&self.keys_tree, &self.bundle, &self.meta).transaction(|(kt, bt, mt)| {
                kt.insert(KEY_CURRENT, raw)?;
                kt.insert(KEY_VERSION, &version)?;
                if p.vs.root_rotated() {
                    kt.insert(&chain[..], raw)?;
                }
                match &grand {
                    Some(g) => kt.insert(KEY_GRANDFATHERED, &g[..])?,
                    None => kt.remove(KEY_GRANDFATHERED)?,
                };
                if let Some(s) = &serial {
                    bt.remove(KEY_ENVELOPE)?;
                    bt.insert(KEY_SERIAL, s)?;
                }
                if p.recovered.is_some() {
                    mt.insert(KEY_FLOOR, &floor)?;
                }
                Ok(())
            });
        self.durable(r)
    }

    /// A new bundle is in force: nothing is grandfathered any more.
    pub(super) fn clear_grandfathered(&self) {
        if self.keys().grandfathered.is_none() {
            return;
        }
        self.keys_mut().grandfathered = None;
        if let Err(e) = self.keys_tree.remove(KEY_GRANDFATHERED) {
            tracing::warn!("store: clearing the grandfathered bundle role: {e}");
        }
    }

    /// The config's keys changed (SIGHUP): follow the stored statements
    /// from them again. Returns warnings (statements now treated as absent).
    pub fn set_roots(&self, roots: TrustPolicy) -> Vec<String> {
        let mut warnings = Vec::new();
        let acknowledged = self.keys().version_floor;
        *self.keys_mut() = load(&self.keys_tree, &roots, acknowledged, &mut warnings);
        warnings
    }

    pub(super) fn keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn keys_mut(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }
}
