//! The commented relay config the docs point operators at
//! (`systemd/edgegate-relay.toml`) is a valid config once its one required
//! edit, an authority key, is made; and as shipped, with no key, the relay
//! refuses it in one line rather than run trusting nobody.

use edgegate::relay::config::RelayConfig;
use std::time::Duration;

const SAMPLE: &str = include_str!("../systemd/edgegate-relay.toml");
const PLACEHOLDER: &str = r#"  # "ed25519:REPLACE-WITH-YOUR-AUTHORITY-PUBLIC-KEY","#;

#[test]
fn shipped_relay_config_loads_once_a_key_is_added() {
    assert!(SAMPLE.contains(PLACEHOLDER), "the placeholder line moved");
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let key = edgegate_proto::PublicKey::from(key.verifying_key());
    let text = SAMPLE.replace(PLACEHOLDER, &format!("  \"{key}\","));
    let c = RelayConfig::from_toml_str(&text).expect("the sample config loads");
    assert_eq!(c.trusted_keys, vec![key]);
    assert_eq!(c.threshold, 1);
    assert_eq!(c.listen_quic.port(), 443);
    assert_eq!(c.listen_tls.port(), 443);
    assert_eq!(c.control_group.as_deref(), Some("edgegate-relay"));
    // The commented limits are the defaults, as they say.
    assert_eq!(c.limits.max_routers, 10_000);
    assert_eq!(c.limits.max_sessions_per_router, 16);
    assert_eq!(c.limits.accept_rate, 200);
    assert_eq!(c.limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.max_handshakes, 256);
    assert_eq!(c.limits.max_bundle_size, 4 << 20);
}

#[test]
fn shipped_relay_config_without_a_key_is_refused() {
    let e = RelayConfig::from_toml_str(SAMPLE).expect_err("no trusted key");
    let line = e.to_string();
    assert!(line.contains("trusted_keys"), "{line}");
    assert!(!line.contains('\n'), "one line: {line}");
}
