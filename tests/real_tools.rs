//! Unmodified tools through `edgegate connect`: the real `curl` fetches the
//! PLC page through a `-L` forward and, with `--socks5`, through the SOCKS5
//! proxy of a `vpn` service, over QUIC and over TLS. (curl comes with any
//! machine rustup was installed on; `.ci/run` installs it if missing.)

#[path = "tunnel_support/harness.rs"]
mod harness;

use harness::*;
use std::process::Command;

fn curl(args: &[String]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed (apt-get install curl)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn curl_through_a_forward_and_through_socks() {
    let d = start_daemon();
    let (http, echo) = (http_backend(), echo_backend());
    // The vpn service `lan` reaches the PLC page's port too.
    let policy = policy_text(http.addr, echo, "active").replace(
        &format!("ports = [{}]", echo.port()),
        &format!("ports = [{}, {}]", echo.port(), http.addr.port()),
    );
    let b1 = d.write("b1", &bundle_bytes(&policy, DEVICE, 1, &d.authority));
    assert!(d.push(&b1, false).status.success());
    let (key, ticket) = d.client("alice", "alice");
    for tls in [false, true] {
        let args = [
            forwards(&["web"]),
            vec!["--socks".into(), "127.0.0.1:0".into()],
        ];
        let mut c = d.connect(&key, &ticket, tls, &args.concat());
        c.ready();
        let (web, socks) = (c.forwarded("web"), c.socks());
        // Two requests on one kept-alive connection through the forward.
        let page = curl(&[
            format!("http://127.0.0.1:{web}/"),
            format!("http://127.0.0.1:{web}/again"),
        ]);
        assert_eq!(
            page.matches("hello from the plc").count(),
            2,
            "tls={tls}: {page}"
        );
        // The same page as a machine-network address, through SOCKS5.
        let page = curl(&[
            "--socks5".into(),
            format!("127.0.0.1:{socks}"),
            format!("http://{}/", http.addr),
        ]);
        assert!(page.contains("hello from the plc"), "tls={tls}: {page}");
        println!(
            "curl through -L and --socks5 over {}: ok",
            if tls { "TLS" } else { "QUIC" }
        );
    }
    let paths: Vec<String> = http.requests.lock().unwrap().clone();
    println!("backend saw: {paths:?}");
    assert!(paths.len() >= 6, "{paths:?}");
}
