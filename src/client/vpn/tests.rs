use super::*;
use edgegate_proto::bundle::Network;
use edgegate_proto::frame::FlowProtocol;
use std::net::Ipv4Addr;

fn flow(cut: bool, port: u16) -> FlowClosed {
    FlowClosed {
        service: "lan".into(),
        protocol: FlowProtocol::Tcp,
        destination: format!("192.168.77.10:{port}"),
        reason: DenyReason::DestinationNotAllowed,
        cut,
    }
}

#[test]
fn a_notice_names_service_reason_and_flow() {
    let now = Instant::now();
    let mut notices = Notices::new(now);
    assert_eq!(
        notices.flow_closed(now, &flow(false, 23)),
        ["denied: lan: destination-not-allowed (tcp 192.168.77.10:23)"]
    );
    let mut cut = flow(true, 502);
    cut.reason = DenyReason::SiteConsentRequired;
    assert_eq!(
        notices.flow_closed(now, &cut),
        ["closed: lan: site-consent-required (tcp 192.168.77.10:502)"]
    );
    let mut nowhere = flow(false, 80);
    nowhere.service.clear();
    nowhere.protocol = FlowProtocol::Icmp;
    nowhere.destination = "10.9.9.9:0".into();
    assert_eq!(
        notices.flow_closed(now, &nowhere),
        ["denied: vpn: destination-not-allowed (icmp 10.9.9.9:0)"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_scan_prints_a_burst_then_one_line_a_second_with_what_was_left_out() {
    let start = Instant::now();
    let mut notices = Notices::new(start);
    let lines: usize = (0..1000)
        .map(|port| notices.flow_closed(start, &flow(false, port)).len())
        .sum();
    assert_eq!(lines, DENIED_BURST as usize);
    // Cuts have a bucket of their own: a scan does not hide a revocation.
    assert_eq!(notices.flow_closed(start, &flow(true, 502)).len(), 1);
    tokio::time::advance(NOTICE_INTERVAL).await;
    let now = Instant::now();
    assert_eq!(
        notices.flow_closed(now, &flow(false, 1)),
        [
            "denied: 990 more flows not shown",
            "denied: lan: destination-not-allowed (tcp 192.168.77.10:1)"
        ]
    );
    assert!(notices.flow_closed(now, &flow(false, 2)).is_empty());
    // A long quiet refills the burst, no more.
    tokio::time::advance(NOTICE_INTERVAL * 1000).await;
    let now = Instant::now();
    let lines: usize = (0..100)
        .map(|port| notices.flow_closed(now, &flow(false, port)).len())
        .sum();
    assert_eq!(lines, DENIED_BURST as usize + 1);
}

fn config(mtu: u16, datagrams: bool) -> VpnConfig {
    VpnConfig {
        address: Ipv4Addr::new(100, 64, 0, 2),
        mtu,
        routes: vec![Network {
            addr: Ipv4Addr::new(192, 168, 77, 0).into(),
            prefix: 24,
        }],
        datagrams,
    }
}

#[test]
fn the_daemons_settings_are_checked_against_the_protocol() {
    assert!(check_config(&config(1280, true), true).is_ok());
    assert!(check_config(&config(1280, false), true).is_ok());
    assert!(check_config(&config(1280, false), false).is_ok());
    let err = check_config(&config(1280, true), false).unwrap_err();
    assert!(err.contains("datagrams"), "{err}");
    assert!(check_config(&config(MIN_MTU - 1, false), false).is_err());
    assert!(check_config(&config(MAX_MTU, false), false).is_ok());
    assert!(check_config(&config(MAX_MTU + 1, false), false).is_err());
    assert_eq!(cidr(&config(1280, false).routes[0]), "192.168.77.0/24");
}

#[test]
fn the_largest_packet_fits_one_frame() {
    let frame = edgegate_proto::frame::encode(&Frame::Packet(vec![0x45; usize::from(MAX_MTU)]));
    assert!(frame.len() - 4 <= MAX_FRAME);
}
