//! Tests of the explanation: step-6 sources, JSON shape and text rendering.

use crate::policy::testutil::{fixture_index as ix, Case};
use crate::policy::Decision;
use edgegate_proto::Level;

const MANAGE: Decision = Decision::Allow(Level::Manage);

#[test]
fn explain_reports_the_membership_chain() {
    let e = Case::new("bob", "vnc").explain(Some(ix()));
    assert_eq!(e.decision, MANAGE);
    let grants = e.trace.iter().find(|t| t.check == "grants").unwrap();
    assert_eq!((grants.step, grants.check), (6, "grants"));
    let src = &grants.sources[0];
    assert_eq!(src.via, ["europe", "div-1", "cust-a"]);
    assert_eq!(src.grants[0].result, "match");
    assert_eq!(src.grants[1].result, "other-category");
    let json: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(json["decision"], "allow");
    assert_eq!(json["level"], "manage");
    assert!(json.get("reason").is_none());
    assert_eq!(e.trace.len(), 13);
}

#[test]
fn explain_reports_why_grants_missed() {
    let e = Case::new("carol", "vnc").explain(Some(ix()));
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["decision"], "deny");
    assert_eq!(json["reason"], "no-grant");
    let src = &json["trace"][11]["sources"][0];
    assert_eq!(src["reaches_device"], false);
    assert_eq!(src["grants"][0]["result"], "not-applicable");
    let e = Case::new("leo", "ws").explain(Some(ix()));
    let g = &e.trace.last().unwrap().sources;
    assert_eq!(g[0].grants[0].result, "needs-mfa");
    assert_eq!(g[1].grants[0].result, "needs-site-consent");
    let text = e.to_string();
    assert!(text.starts_with("deny: mfa-required\n"), "{text}");
    assert!(text.contains("membership div-1 as provider"), "{text}");
}

#[test]
fn explain_stops_at_the_deciding_check() {
    let e = Case::new("ivan", "dash").explain(Some(ix()));
    let last = e.trace.last().unwrap();
    assert_eq!((last.check, last.passed), ("user-active", false));
    assert!(e.trace[..e.trace.len() - 1].iter().all(|t| t.passed));
}

#[test]
fn allowed_explanation_renders_as_text() {
    let text = Case::new("frank", "dash").explain(Some(ix())).to_string();
    assert!(text.starts_with("allow (manage)\n"), "{text}");
    assert!(text.contains("company role viewer"), "{text}");
    assert!(
        text.contains(
            "membership cust-a as info-manager: group active, reaches this device via cust-a"
        ),
        "{text}"
    );
    assert!(text.contains("info-access (read): match"), "{text}");
}
