//! Compile tests: every `CompileError` variant, with its one-line message.

use crate::policy::testutil::{compile, fixture, fixture_index as ix, DEVICE, NOT_AFTER};

fn compile_err(f: impl FnOnce(&mut edgegate_proto::Bundle)) -> String {
    let mut b = fixture();
    f(&mut b);
    compile(&b).unwrap_err().to_string()
}

#[test]
fn compile_rejects_duplicates_and_dangling_references() {
    assert_eq!(
        compile_err(|b| b.users.push(b.users[0].clone())),
        "duplicate user id \"alice\""
    );
    assert_eq!(
        compile_err(|b| b.groups[1].id = "europe".into()),
        "duplicate group id \"europe\""
    );
    assert_eq!(
        compile_err(|b| b.users[0].roles.push("ghost".into())),
        "user \"alice\": role \"ghost\" does not exist"
    );
    assert_eq!(
        compile_err(|b| b.users[1].memberships[0].group = "g".into()),
        "user \"bob\": membership group \"g\" does not exist"
    );
    assert_eq!(
        compile_err(|b| b.users[1].memberships[0].role = "r".into()),
        "user \"bob\": membership role \"r\" does not exist"
    );
    assert_eq!(
        compile_err(|b| b.roles[0].grants[0].category = "c".into()),
        "role \"admin\": category \"c\" does not exist"
    );
    assert_eq!(
        compile_err(|b| b.device.services[0].category = "c".into()),
        "service \"vpn\": category \"c\" does not exist"
    );
    assert_eq!(
        compile_err(|b| b.device.groups.push("g".into())),
        "device \"dev-1\": group \"g\" does not exist"
    );
    assert_eq!(
        compile_err(|b| b.groups[0].parent = Some("g".into())),
        "group \"europe\": parent \"g\" does not exist"
    );
}

#[test]
fn compile_rejects_cycles_scope_misuse_device_and_targets() {
    assert_eq!(
        compile_err(|b| b.groups[0].parent = Some("cust-a".into())),
        "group \"europe\" is its own ancestor (parent cycle)"
    );
    assert_eq!(
        compile_err(|b| b.groups[5].parent = Some("plant".into())),
        "group \"plant\" is its own ancestor (parent cycle)"
    );
    let company_role_membership = |b: &mut edgegate_proto::Bundle| {
        b.users[0]
            .memberships
            .push(edgegate_proto::bundle::Membership {
                group: "europe".into(),
                role: "admin".into(),
            })
    };
    assert_eq!(
        compile_err(company_role_membership),
        "user \"alice\": membership in group \"europe\" uses company-scope role \"admin\""
    );
    assert_eq!(
        compile_err(|b| b.users[0].roles.push("operator".into())),
        "user \"alice\": group-scope role \"operator\" listed as a company role"
    );
    assert_eq!(
        compile_err(|b| b.device.id = "dev-9".into()),
        "device id \"dev-9\" differs from bundle device id \"dev-1\""
    );
    let swap = |b: &mut edgegate_proto::Bundle| {
        let t = b.device.services[2].target.clone();
        b.device.services[2].target = b.device.services[0].target.clone();
        b.device.services[0].target = t;
    };
    assert_eq!(
        compile_err(swap),
        "service \"vpn\": a vpn service needs networks, not host:port"
    );
    let vnc_networks = |b: &mut edgegate_proto::Bundle| {
        b.device.services[2].target = b.device.services[0].target.clone();
    };
    assert_eq!(
        compile_err(vnc_networks),
        "service \"vnc\": only a vpn service may have networks"
    );
}

#[test]
fn compiled_index_exposes_services_in_bundle_order() {
    let ix = ix();
    assert_eq!(
        (ix.device_id(), ix.serial(), ix.not_after()),
        (DEVICE, 7, NOT_AFTER)
    );
    let ids: Vec<&str> = ix.services().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["vpn", "vpn-any", "vnc", "dash", "ws"]);
    assert_eq!(ix.service("ws").unwrap().category, "maint-access");
    assert!(ix.service("nope").is_none());
}

/// Ids are found whatever their length: those that fit a user's record are
/// matched there, longer ones in full; sharing a prefix, the length or a
/// hash bucket matches nothing else.
#[test]
fn users_are_found_by_their_whole_id_short_or_long() {
    let long = "x".repeat(37);
    let longer = format!("{long}-and-more");
    let ids = [
        "a",
        "ab",
        long.as_str(),
        longer.as_str(),
        "user-1",
        "user-10",
    ];
    let mut b = fixture();
    for id in ids {
        let mut u = b.users[0].clone();
        u.id = id.into();
        u.name = format!("name of {id}");
        b.users.push(u);
    }
    let ix = compile(&b).unwrap();
    for id in ids {
        assert_eq!(
            ix.user_name(id),
            Some(format!("name of {id}").as_str()),
            "{id}"
        );
    }
    let near = [
        "",
        "abc",
        "user-",
        "user-100",
        &long[..36],
        &format!("{long}-"),
        &format!("{longer}!"),
        &longer[..longer.len() - 1],
    ];
    for id in near {
        assert_eq!(ix.user_name(id), None, "{id:?}");
    }
    assert_eq!(ix.user_name("alice"), Some("User alice"));
}
