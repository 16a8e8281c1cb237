use super::render::*;
use super::*;
use crate::control::{BundleStatus, ConsentInfo, PushResult, SessionInfo, StatusInfo, StreamInfo};
use clap::Parser;
use edgegate_proto::audit::Transport;
use edgegate_proto::Level;

#[derive(Debug, clap::Parser)]
struct Top {
    #[command(subcommand)]
    cmd: ControlCommand,
}

fn parse(args: &[&str]) -> Result<ControlCommand, clap::Error> {
    Top::try_parse_from(std::iter::once("edgegate").chain(args.iter().copied())).map(|t| t.cmd)
}

#[test]
fn command_line_contract_parses() {
    let c = parse(&["status", "--socket", "/tmp/x.sock"]).unwrap();
    assert!(
        matches!(c, ControlCommand::Status(ref a) if a.socket.socket == Path::new("/tmp/x.sock"))
    );
    let c = parse(&["sessions", "kill", "42"]).unwrap();
    assert!(matches!(
        c,
        ControlCommand::Sessions(SessionsArgs {
            command: Some(SessionsCommand::Kill { id: 42 }),
            ..
        })
    ));
    let c = parse(&["audit", "--json"]).unwrap();
    assert!(matches!(
        c,
        ControlCommand::Audit(AuditArgs {
            json: true,
            command: None,
            limit: 100,
            ..
        })
    ));
    let c = parse(&["audit", "verify"]).unwrap();
    assert!(matches!(
        c,
        ControlCommand::Audit(AuditArgs {
            command: Some(AuditCommand::Verify { head: None }),
            ..
        })
    ));
    assert!(parse(&["audit", "verify", "--head", "nonsense"]).is_err());
    let c = parse(&["audit", "--strangers"]).unwrap();
    assert!(matches!(
        c,
        ControlCommand::Audit(AuditArgs {
            strangers: true,
            ..
        })
    ));
    let c = parse(&["consent", "grant", "--for", "2h"]).unwrap();
    assert!(matches!(
        c,
        ControlCommand::Consent(ConsentArgs {
            command: ConsentCommand::Grant {
                for_secs: Some(7200)
            },
            ..
        })
    ));
    let c = parse(&["consent", "grant"]).unwrap();
    assert!(matches!(
        c,
        ControlCommand::Consent(ConsentArgs {
            command: ConsentCommand::Grant { for_secs: None },
            ..
        })
    ));
    assert!(parse(&["consent", "revoke"]).is_ok());
    assert!(parse(&["consent", "grant", "--for", "2 hours"]).is_err());
    assert!(parse(&["audit", "--limit", "0"]).is_err());
}

#[test]
fn socket_is_accepted_after_a_subcommand() {
    let socket = |c: &ControlCommand| match c {
        ControlCommand::Status(a) => a.socket.socket.clone(),
        ControlCommand::Sessions(a) => a.socket.socket.clone(),
        ControlCommand::Audit(a) => a.socket.socket.clone(),
        ControlCommand::Consent(a) => a.socket.socket.clone(),
    };
    for args in [
        &["consent", "grant", "--for", "2h", "--socket", "/s"][..],
        &["consent", "revoke", "--socket", "/s"],
        &["audit", "verify", "--socket", "/s"],
        &["sessions", "kill", "3", "--socket", "/s"],
        &["sessions", "--socket", "/s", "kill", "3"],
    ] {
        let c = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(socket(&c), Path::new("/s"), "{args:?}");
    }
    let c = parse(&["consent", "revoke"]).unwrap();
    assert_eq!(socket(&c), Path::new(DEFAULT_SOCKET));
}

#[test]
fn spans_and_ages() {
    assert_eq!(span(45), "45s");
    assert_eq!(span(180), "3m");
    assert_eq!(span(7200), "2h");
    assert_eq!(span(7500), "2h 5m");
    assert_eq!(span(86_400 * 3), "3d");
    assert_eq!(span(86_400 * 3 + 3600 * 4), "3d 4h");
    assert_eq!(when(1000, 1180), "1970-01-01T00:16:40Z (3m ago)");
    assert_eq!(when(1180, 1000), "1970-01-01T00:19:40Z (in 3m)");
}

fn sample_status() -> StatusInfo {
    StatusInfo {
        device_id: "router-7".into(),
        version: "0.1.0".into(),
        now: 10_000,
        time_floor: 9_820,
        bundle: Some(BundleStatus {
            serial: 12,
            issued_at: 9_820,
            not_after: 10_000 + 86_400,
        }),
        consent: ConsentInfo {
            active: true,
            until: Some(17_200),
            remaining_secs: Some(7_200),
        },
        sessions: 2,
        listen_quic: "0.0.0.0:4433".into(),
        listen_tls: "0.0.0.0:4433".into(),
    }
}

#[test]
fn status_is_aligned_key_value_lines() {
    let text = status_text(&sample_status());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "device:         router-7");
    assert!(lines.contains(&"bundle serial:  12"));
    assert!(lines.contains(&"bundle issued:  1970-01-01T02:43:40Z (3m ago)"));
    assert!(lines.contains(&"bundle expires: 1970-01-02T02:46:40Z (in 1d)"));
    assert!(lines.contains(&"consent:        active until 1970-01-01T04:46:40Z (in 2h)"));
    assert!(lines.contains(&"sessions:       2"));
    let colon = lines
        .iter()
        .map(|l| {
            l.find(": ").unwrap()
                + l[l.find(':').unwrap()..]
                    .find(|c: char| c != ':' && c != ' ')
                    .unwrap()
        })
        .collect::<Vec<_>>();
    assert!(
        colon.windows(2).all(|w| w[0] == w[1]),
        "values start in one column: {text}"
    );

    let mut s = sample_status();
    s.bundle = None;
    s.consent = ConsentInfo {
        active: false,
        until: None,
        remaining_secs: None,
    };
    let text = status_text(&s);
    assert!(text.contains("bundle:      none"), "{text}");
    assert!(text.contains("consent:     inactive"), "{text}");
    let j = status_json(&sample_status());
    assert_eq!(j["bundle"]["age_secs"], 180);
}

#[test]
fn sessions_render() {
    let key = crate::testkit::public(&crate::testkit::key(1));
    let s = SessionInfo {
        id: 3,
        user: "anna".into(),
        client_key: key,
        transport: Transport::Quic,
        peer: "127.0.0.1:50000".into(),
        started: 700,
        ends_at: None,
        streams: vec![StreamInfo {
            service: "lan".into(),
            destination: Some("192.168.1.10:502".into()),
            level: Level::Manage,
            bytes_up: 10,
            bytes_down: 20,
            started: 940,
        }],
    };
    let text = sessions_text(std::slice::from_ref(&s), 1000);
    assert!(text.starts_with("3 anna quic 127.0.0.1:50000 started 1970-01-01T00:11:40Z (5m ago), 1 stream(s), key ed25519:"), "{text}");
    assert!(
        text.contains("\n    lan -> 192.168.1.10:502 manage up 10 down 20 since 1m\n"),
        "{text}"
    );
    let j = session_json(&s);
    assert_eq!(j["streams"][0]["level"], "manage");
    assert_eq!(j["client_key"], key.to_string());
}

struct Canned;

impl crate::control::ControlHandler for Canned {
    fn handle(
        &self,
        req: Request,
        _peer: crate::control::PeerCred,
    ) -> crate::control::BoxFuture<'_, Response> {
        use edgegate_proto::audit::AuditVerifyError;
        Box::pin(async move {
            match req {
                Request::Status => Response::Status(sample_status()),
                Request::Sessions => Response::Sessions(vec![]),
                Request::Kill { id } => Response::Killed(id == 1),
                Request::Audit { .. } => Response::Audit(vec![]),
                Request::AuditVerify => Response::AuditVerify(Err(AuditVerifyError {
                    seq: 4,
                    what: "records 4..=4 are missing".into(),
                })),
                Request::ConsentGrant { secs } => Response::Consent(ConsentInfo {
                    active: true,
                    until: secs.map(|s| 1000 + s),
                    remaining_secs: secs,
                }),
                Request::ConsentRevoke => Response::Error("permission denied".into()),
                Request::PushBundle { bytes } if bytes == b"old" => {
                    Response::Push(PushResult::Rejected {
                        code: "rollback".into(),
                        message: "serial 3 is not above the stored 5".into(),
                    })
                }
                Request::PushBundle { .. } => Response::Push(PushResult::Accepted { serial: 6 }),
                Request::Strangers { .. } => Response::Strangers(vec![]),
                Request::AuditVerifyHead { .. } => Response::Error("not in this test".into()),
                Request::Keys => Response::Error("not in this test".into()),
            }
        })
    }
}

#[tokio::test]
async fn commands_against_a_stand_in_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    let server = crate::control::ControlServer::bind(&path, None).unwrap();
    let task = tokio::spawn(server.serve(std::sync::Arc::new(Canned)));
    let sock = || SocketArg {
        socket: path.clone(),
    };

    assert_eq!(
        status(StatusArgs {
            socket: sock(),
            json: false
        })
        .await,
        Ok(())
    );
    assert_eq!(
        status(StatusArgs {
            socket: sock(),
            json: true
        })
        .await,
        Ok(())
    );
    let kill = |id| SessionsArgs {
        socket: sock(),
        json: false,
        command: Some(SessionsCommand::Kill { id }),
    };
    assert_eq!(sessions(kill(1)).await, Ok(()));
    assert_eq!(sessions(kill(9)).await, Err("no session 9".into()));
    let verify = AuditArgs {
        socket: sock(),
        json: false,
        since: None,
        limit: 10,
        strangers: false,
        command: Some(AuditCommand::Verify { head: None }),
    };
    assert_eq!(
        audit(verify).await,
        Err(
            "audit verify failed: audit chain broken at record 4: records 4..=4 are missing".into()
        )
    );
    let revoke = ConsentArgs {
        socket: sock(),
        command: ConsentCommand::Revoke,
    };
    assert_eq!(consent(revoke).await, Err("permission denied".into()));
    let grant = ConsentArgs {
        socket: sock(),
        command: ConsentCommand::Grant { for_secs: Some(60) },
    };
    assert_eq!(consent(grant).await, Ok(()));

    let old = dir.path().join("old.bundle");
    std::fs::write(&old, b"old").unwrap();
    assert_eq!(
        push(path.clone(), old, None).await,
        Err("rejected: rollback: serial 3 is not above the stored 5".into())
    );
    let new = dir.path().join("new.bundle");
    std::fs::write(&new, b"new").unwrap();
    assert_eq!(push(path.clone(), new, None).await, Ok(()));
    let missing = push(path.clone(), dir.path().join("nope"), None)
        .await
        .unwrap_err();
    assert!(
        missing.ends_with("nope: No such file or directory (os error 2)"),
        "{missing}"
    );
    task.abort();

    let gone = status(StatusArgs {
        socket: SocketArg {
            socket: dir.path().join("gone.sock"),
        },
        json: false,
    })
    .await
    .unwrap_err();
    assert!(gone.starts_with("cannot connect to "), "{gone}");
}

#[test]
fn status_shows_the_key_statement_and_each_roles_fingerprints() {
    use edgegate_proto::control::{KeysInfo, RoleInfo};
    let key = |n: u8| crate::testkit::public(&crate::testkit::key(n));
    let role = |name: &str, n: u8| RoleInfo {
        role: name.into(),
        threshold: 1,
        keys: vec![key(n)],
    };
    let keys = KeysInfo {
        version: 2,
        expires_at: Some(sample_status().now + 3600),
        roles: vec![
            role("root", 1),
            role("bundle", 2),
            role("ticket", 3),
            role("enroll", 4),
        ],
    };
    let text = status_with_keys_text(&sample_status(), Some(&keys));
    assert!(text.contains("key statement:"), "{text}");
    assert!(text.contains("version 2, accepted until"), "{text}");
    let ticket = key(3).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("ticket keys:"))
        .unwrap();
    assert!(
        line.ends_with(&format!("1 of {}…", &ticket[..20])),
        "{line}"
    );
    let none = KeysInfo {
        version: 0,
        expires_at: None,
        roles: vec![role("root", 1)],
    };
    let text = status_with_keys_text(&sample_status(), Some(&none));
    assert!(text.contains("act as root and every role"), "{text}");
    let j = keys_json(&keys);
    assert_eq!(j["roles"]["ticket"]["keys"][0], ticket.as_str());
}
