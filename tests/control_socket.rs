//! The control socket's permission check against real processes of other
//! users: this test binary re-runs itself as `nobody` to play the client.
//! Needs root (to switch uid); skipped otherwise.

use edgegate::control::{
    BoxFuture, Client, ControlHandler, ControlServer, PeerCred, Request, Response,
};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::Arc;

const CHILD_ENV: &str = "EDGEGATE_CONTROL_TEST_SOCKET";
const NOBODY: u32 = 65534;

struct WhoAmI;

impl ControlHandler for WhoAmI {
    fn handle(&self, _req: Request, peer: PeerCred) -> BoxFuture<'_, Response> {
        Box::pin(async move { Response::Error(format!("hello uid {} gid {}", peer.uid, peer.gid)) })
    }
}

/// The client half, run in a child process as another user.
#[test]
fn child_client() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(async {
        match Client::connect(&path).await {
            Ok(mut c) => match c.call(&Request::Status).await {
                Ok(resp) => format!("{resp:?}"),
                Err(e) => format!("call error: {e}"),
            },
            Err(e) => format!("connect error: {e}"),
        }
    });
    println!("CHILD-RESULT {out}");
}

fn run_child(socket: &Path, uid: u32, gid: u32) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_client", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, socket)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| {
            panic!(
                "child said nothing: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_checked_by_uid_and_group() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a client under another uid");
        return;
    }
    let Ok(Some(group)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(NOBODY)) else {
        eprintln!("skipped: no group with gid {NOBODY}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("control.sock");
    let server = ControlServer::bind(&path, Some(&group.name)).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.gid(), NOBODY, "socket belongs to the control group");
    let task = tokio::spawn(server.serve(Arc::new(WhoAmI)));

    // Layer 1, the file mode: not in the group, cannot even connect.
    let path2 = path.clone();
    let out = tokio::task::spawn_blocking(move || run_child(&path2, NOBODY, NOBODY - 1))
        .await
        .unwrap();
    assert!(out.starts_with("connect error: cannot connect to"), "{out}");
    assert!(out.contains("Permission denied"), "{out}");

    // Layer 2, SO_PEERCRED: with the file opened up, still refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let path2 = path.clone();
    let out = tokio::task::spawn_blocking(move || run_child(&path2, NOBODY, NOBODY - 1))
        .await
        .unwrap();
    assert_eq!(out, "Error(\"permission denied\")");

    // A member of the control group gets through.
    let path2 = path.clone();
    let out = tokio::task::spawn_blocking(move || run_child(&path2, NOBODY, NOBODY))
        .await
        .unwrap();
    assert_eq!(out, format!("Error(\"hello uid {NOBODY} gid {NOBODY}\")"));

    // Root does too.
    let mut c = Client::connect(&path).await.unwrap();
    assert_eq!(
        c.call(&Request::Status).await.unwrap(),
        Response::Error("hello uid 0 gid 0".into())
    );
    task.abort();
}
