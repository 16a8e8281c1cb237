//! `edgegate policy check` and `edgegate policy explain`.
//!
//! Check validates the file, then runs each `[[test]]` through the real
//! evaluator (see `evaluate`) on a bundle compiled for the test's device.
//! Test time is fixed so results never depend on the day they run: the user
//! authenticated at `TEST_AUTH_TIME` (Monday 2026-01-05 08:00 UTC), the
//! question is asked `after` that (default one minute) or `at` an instant;
//! the bundle was issued a week before and is valid for 400 days.

use super::evaluate::{self, ask, compile_bundle, outcome, outcome_text, Question};
use super::{CheckArgs, ExplainArgs};
use crate::clock::Clock;
use crate::duration::format_time;
use crate::policy::{Explanation, PolicyIndex};
use crate::policy_file::{compile_for_device, PolicyFile, PolicyTest, TestTime, TEST_AUTH_TIME};
use anyhow::{anyhow, bail};
use edgegate_proto::envelope::{self, Purpose};
use edgegate_proto::{TrustPolicy, VerifiedBundle};
use std::collections::HashMap;
use std::io::Write;

const TEST_BUNDLE_ISSUED: u64 = TEST_AUTH_TIME - 7 * 86_400;
const TEST_BUNDLE_NOT_AFTER: u64 = TEST_AUTH_TIME + 400 * 86_400;

pub(super) fn check(a: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let policy = PolicyFile::load(&a.policy)?;
    for w in &policy.warnings {
        writeln!(out, "warning: {w}")?;
    }
    // Every device must compile as a device would accept it, tested or not.
    let mut indexes: HashMap<&str, PolicyIndex> = HashMap::new();
    for d in &policy.devices {
        let b = compile_for_device(&policy, &d.id, 1, TEST_BUNDLE_ISSUED, TEST_BUNDLE_NOT_AFTER)?;
        indexes.insert(&d.id, compile_bundle(&b)?);
    }
    let mut failed = 0;
    for t in &policy.tests {
        let e = run_test(&indexes[t.device.as_str()], t)?;
        if !t.expect.matches(outcome(e.decision)) {
            failed += 1;
            writeln!(
                out,
                "{}:{}: test {}/{}/{}: expected {}, got {} ({})",
                policy.path,
                t.line,
                t.user,
                t.device,
                t.service,
                t.expect,
                outcome_text(e.decision),
                summary(&e)
            )?;
        }
    }
    let total = policy.tests.len();
    if failed > 0 {
        bail!("{}: {failed} of {total} tests failed", policy.path);
    }
    writeln!(out, "ok: {total} tests passed")?;
    Ok(())
}

fn run_test(index: &PolicyIndex, t: &PolicyTest) -> anyhow::Result<Explanation> {
    let now = match t.when {
        TestTime::AfterAuth(d) => TEST_AUTH_TIME.saturating_add(d),
        TestTime::At(at) => at,
    };
    ask(
        index,
        &Question {
            user: &t.user,
            service: &t.service,
            mfa: t.mfa,
            consent: t.consent,
            destination: t.destination,
            auth_time: TEST_AUTH_TIME,
            now,
        },
    )
}

/// The check that decided, in words: the failed one on deny, the grants on allow.
fn summary(e: &Explanation) -> String {
    let decisive = match e.reason {
        Some(_) => e.trace.iter().rev().find(|t| !t.passed),
        None => e.trace.iter().rev().find(|t| t.check == "grants"),
    };
    decisive
        .or(e.trace.last())
        .map(|t| format!("{}: {}", t.check, t.detail))
        .unwrap_or_default()
}

pub(super) fn explain(a: &ExplainArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let path = a.bundle.display();
    let bytes = std::fs::read(&a.bundle).map_err(|e| anyhow!("{path}: {e}"))?;
    let (trust, authority) = if a.trust.is_empty() {
        let (_, sigs) =
            envelope::parse(Purpose::Bundle, &bytes).map_err(|e| anyhow!("{path}: {e}"))?;
        let keys = sigs.iter().map(|s| s.key).collect();
        let trust =
            TrustPolicy::new(keys, 1).map_err(|_| anyhow!("{path}: bundle has no signatures"))?;
        (trust, "own signers (give --trust to check the authority)")
    } else {
        (super::trust_policy(&a.trust, a.threshold)?, "trusted")
    };
    let verified = VerifiedBundle::verify(&bytes, &trust).map_err(|e| anyhow!("{path}: {e}"))?;
    let index = evaluate::compile_verified(&verified)?;
    // A daemon holding this bundle never evaluates before its issue time
    // (the time floor, DESIGN §3): neither does the explanation.
    let asked = a.at.unwrap_or_else(|| Clock::system().wall());
    let now = asked.max(index.issued_at());
    let floored = (now != asked).then(|| {
        format!(
            "--at {} is before the bundle's issue time; a gateway holding it uses its time floor {}",
            format_time(asked),
            format_time(now)
        )
    });
    let auth_time = a.auth_time.unwrap_or(now);
    let e = ask(
        &index,
        &Question {
            user: &a.user,
            service: &a.service,
            mfa: a.mfa,
            consent: a.consent,
            destination: a.destination,
            auth_time,
            now,
        },
    )?;
    if a.json {
        let mut v = serde_json::to_value(&e)?;
        let obj = v.as_object_mut().expect("an explanation is a JSON object");
        obj.insert("user".into(), a.user.clone().into());
        obj.insert("service".into(), a.service.clone().into());
        obj.insert("device".into(), index.device_id().into());
        obj.insert("serial".into(), index.serial().into());
        obj.insert("at".into(), format_time(now).into());
        if let Some(note) = &floored {
            obj.insert("time_floor".into(), note.clone().into());
        }
        obj.insert("auth_time".into(), format_time(auth_time).into());
        obj.insert("bundle_signatures".into(), authority.into());
        obj.insert(
            "ticket".into(),
            "synthetic, signed for this question".into(),
        );
        writeln!(out, "{}", serde_json::to_string(&v)?)?;
    } else {
        writeln!(
            out,
            "user {} on {} service {} at {} (bundle serial {}, signatures: {authority}; ticket: synthetic)",
            a.user,
            index.device_id(),
            a.service,
            format_time(now),
            index.serial()
        )?;
        if let Some(note) = &floored {
            writeln!(out, "note: {note}")?;
        }
        write!(out, "{e}")?;
    }
    Ok(())
}
