//! Key files: creating, loading and naming ed25519 keys on disk.
//!
//! Private key file format (authority, device and client keys alike): a text
//! file holding exactly one line,
//!
//! ```text
//! edgegate-ed25519-secret:<standard base64 of the 32-byte ed25519 seed>
//! ```
//!
//! followed by a newline, created with mode 0600 (on Windows: readable by
//! the creating user only, see [`restrict_to_owner`]). Surrounding whitespace is
//! ignored when reading. Public keys are written `ed25519:<base64>` (see
//! `edgegate_proto::PublicKey`); anywhere a public key is expected, a file
//! containing one, or a private key file, is accepted too.
//!
//! This module never prints or logs a secret: errors name the path, not the
//! contents.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use edgegate_proto::PublicKey;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

/// The prefix of a private key file's single line.
pub const SECRET_PREFIX: &str = "edgegate-ed25519-secret:";

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The cause (in the message, not chained, so it prints once).
        error: io::Error,
    },
    /// The file is not an edgegate private key file.
    #[error(
        "{path}: not an edgegate private key file (expected one line {SECRET_PREFIX}<base64>)"
    )]
    NotASecretKey {
        /// The file.
        path: String,
    },
    /// A public key (or a file holding one) where a private key is needed.
    #[error("{path}: a public key; signing needs the private key file (`edgegate keygen --out FILE` writes one)")]
    PublicNotSecret {
        /// The file or argument.
        path: String,
    },
    /// A private key file that other users can read (or write).
    #[error("{path}: private key file is accessible to group or others (mode {mode:04o}); run `chmod 600 {path}`")]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The argument is neither a public key, nor a file holding a public or private key.
    #[error("{arg}: not a public key (ed25519:<base64>), nor a file holding one or a private key")]
    NotAPublicKey {
        /// The argument as given.
        arg: String,
    },
    /// The argument looks like a public key but is malformed.
    #[error("{arg}: {error}")]
    BadPublicKey {
        /// The argument as given (a public key, never a secret).
        arg: String,
        /// The cause (in the message, not chained).
        error: edgegate_proto::keys::KeyParseError,
    },
}

/// Create a new key at `path` (mode 0600) and return it. Refuses to replace
/// an existing file (`io::ErrorKind::AlreadyExists`, with a message saying so).
pub fn generate(path: &Path) -> io::Result<SigningKey> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    write_new(path, &key)?;
    Ok(key)
}

/// Create a directory for key files and any missing parents: mode 0700 on
/// unix (existing ones are left as they are); elsewhere as the system makes
/// it (each key file is restricted on its own).
pub fn create_key_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Write `key` to a new file at `path` (mode 0600), refusing to overwrite.
pub fn write_new(path: &Path, key: &SigningKey) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{}: already exists; refusing to overwrite a key file",
                    path.display()
                ),
            )
        } else {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        }
    })?;
    // Windows: owner-only before the secret is in it.
    #[cfg(windows)]
    if let Err(why) = restrict_to_owner(path) {
        // A warning, not an error: the key is still the user's to protect,
        // and %APPDATA% (the default place) is private to the user already.
        eprintln!(
            "warning: {}: could not make the key file readable by you only ({why}); \
             keep it in a folder only you can read, such as %APPDATA%\\edgegate",
            path.display()
        );
    }
    let line = format!("{SECRET_PREFIX}{}\n", STANDARD.encode(key.to_bytes()));
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Windows: give the file an ACL of its own that lets only the current user
/// (and no inherited entry) in, with the system's `icacls` (present on every
/// Windows since Vista), so no unsafe Win32 call is needed here. On failure
/// says why; the caller warns.
#[cfg(windows)]
pub fn restrict_to_owner(path: &Path) -> Result<(), String> {
    let user = match (std::env::var("USERDOMAIN"), std::env::var("USERNAME")) {
        (Ok(domain), Ok(user)) if !domain.is_empty() => format!("{domain}\\{user}"),
        (_, Ok(user)) => user,
        _ => return Err("USERNAME is not set".into()),
    };
    let out = std::process::Command::new("icacls")
        .arg(path)
        .args(["/inheritance:r", "/grant:r"])
        .arg(format!("{user}:F"))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("icacls: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        let said = said.split_whitespace().collect::<Vec<_>>().join(" ");
        Err(format!("icacls: {} {said}", out.status))
    }
}

/// Load a private key file. A file that group or others may read or write
/// is refused (the key may already be copied; it must not stay usable
/// unnoticed), with the `chmod` that fixes it.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let shown = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        // `--key ed25519:…`: a public key where the private key file belongs.
        Err(_) if shown.starts_with("ed25519:") => {
            return Err(KeyFileError::PublicNotSecret { path: shown })
        }
        Err(error) => return Err(KeyFileError::Io { path: shown, error }),
    };
    let text = String::from_utf8_lossy(&bytes);
    let key = parse_secret(&text);
    let public = key.is_none() && text.trim().parse::<PublicKey>().is_ok();
    if let std::borrow::Cow::Owned(copy) = text {
        wipe(copy.into_bytes());
    }
    wipe(bytes);
    match key {
        Some(key) => {
            check_private_mode(path, &shown)?;
            Ok(key)
        }
        None if public => Err(KeyFileError::PublicNotSecret { path: shown }),
        None => Err(KeyFileError::NotASecretKey { path: shown }),
    }
}

#[cfg(unix)]
fn check_private_mode(path: &Path, shown: &str) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|error| KeyFileError::Io {
        path: shown.to_string(),
        error,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed {
            path: shown.to_string(),
            mode,
        });
    }
    Ok(())
}

/// Windows: not checked. Reading a file's ACL needs Win32 calls this crate
/// does not make (no unsafe code); keys made by `keygen` get an owner-only
/// ACL, and the default place, %APPDATA%, is private to the user.
#[cfg(not(unix))]
fn check_private_mode(_path: &Path, _shown: &str) -> Result<(), KeyFileError> {
    Ok(())
}

/// A key file's text without surrounding whitespace and without the byte
/// order mark Windows editors (Notepad before 2019) put in front.
fn key_text(text: &str) -> &str {
    text.trim().trim_start_matches('\u{feff}')
}

fn parse_secret(text: &str) -> Option<SigningKey> {
    let b64 = key_text(text).strip_prefix(SECRET_PREFIX)?;
    let raw = STANDARD.decode(b64).ok()?;
    let key = <[u8; 32]>::try_from(raw.as_slice())
        .ok()
        .map(|seed| SigningKey::from_bytes(&seed));
    wipe(raw);
    key
}

/// Best-effort overwrite of a buffer that held secret material before it is
/// freed (`SigningKey` itself zeroizes on drop).
fn wipe(mut buf: Vec<u8>) {
    buf.fill(0);
    std::hint::black_box(&buf);
}

/// The public key of a signing key.
pub fn public_key(key: &SigningKey) -> PublicKey {
    PublicKey::from(key.verifying_key())
}

/// A public key from an `ed25519:<b64>` string, from a file containing one,
/// or from a private key file (its public half).
pub fn load_public_key(arg: &str) -> Result<PublicKey, KeyFileError> {
    if arg.trim().starts_with("ed25519:") {
        return arg.parse().map_err(|error| KeyFileError::BadPublicKey {
            arg: arg.to_string(),
            error,
        });
    }
    let path = Path::new(arg);
    if !path.exists() {
        return Err(KeyFileError::NotAPublicKey {
            arg: arg.to_string(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|error| KeyFileError::Io {
        path: arg.to_string(),
        error,
    })?;
    if key_text(&text).starts_with("ed25519:") {
        return key_text(&text)
            .parse()
            .map_err(|error| KeyFileError::BadPublicKey {
                arg: arg.to_string(),
                error,
            });
    }
    let key = parse_secret(&text).map(|k| public_key(&k));
    wipe(text.into_bytes());
    key.ok_or_else(|| KeyFileError::NotAPublicKey {
        arg: arg.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generate_load_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        let key = generate(&path).unwrap();
        #[cfg(unix)]
        {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(SECRET_PREFIX) && text.ends_with('\n'));
        assert_eq!(load_signing_key(&path).unwrap().to_bytes(), key.to_bytes());

        let err = generate(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("refusing to overwrite"));
        assert_eq!(load_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
    }

    #[test]
    #[cfg(unix)]
    fn a_key_file_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let key = generate(&path).unwrap();
        for mode in [0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load_signing_key(&path).unwrap_err().to_string();
            let shown = path.display();
            assert_eq!(
                err,
                format!(
                    "{shown}: private key file is accessible to group or others \
                     (mode {mode:04o}); run `chmod 600 {shown}`"
                )
            );
            assert!(!err.contains('\n'));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(load_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
        // Its public half may still be read from it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_public_key(path.to_str().unwrap()).is_ok());
    }

    #[test]
    fn public_key_from_string_file_or_secret() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("c.key");
        let key = generate(&secret).unwrap();
        let pk = public_key(&key);
        let text = pk.to_string();
        assert_eq!(load_public_key(&text).unwrap(), pk);
        let pub_file = dir.path().join("c.pub");
        std::fs::write(&pub_file, format!("{text}\n")).unwrap();
        assert_eq!(load_public_key(pub_file.to_str().unwrap()).unwrap(), pk);
        assert_eq!(load_public_key(secret.to_str().unwrap()).unwrap(), pk);
    }

    /// Key files saved by a Windows editor: a byte order mark and CRLF.
    #[test]
    fn a_byte_order_mark_and_crlf_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("w.key");
        let key = generate(&secret).unwrap();
        let line = std::fs::read_to_string(&secret).unwrap();
        let edited = dir.path().join("edited.key");
        write_new(&edited, &crate::testkit::key(9)).unwrap();
        std::fs::write(&edited, format!("\u{feff}{}\r\n", line.trim())).unwrap();
        assert_eq!(
            load_signing_key(&edited).unwrap().to_bytes(),
            key.to_bytes()
        );
        let pub_file = dir.path().join("gateway.pub");
        std::fs::write(&pub_file, format!("\u{feff}{}\r\n", public_key(&key))).unwrap();
        assert_eq!(
            load_public_key(pub_file.to_str().unwrap()).unwrap(),
            public_key(&key)
        );
    }

    #[test]
    fn errors_are_clear_and_leak_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "hello").unwrap();
        let err = load_signing_key(&junk).unwrap_err().to_string();
        assert!(err.contains("not an edgegate private key file"), "{err}");
        assert!(load_public_key("nope-no-file").is_err());
        assert!(load_public_key(junk.to_str().unwrap()).is_err());
        assert!(load_public_key("ed25519:AAAA").is_err());

        let secret = dir.path().join("s.key");
        let key = generate(&secret).unwrap();
        let b64 = STANDARD.encode(key.to_bytes());
        let err = format!("{:?}", load_signing_key(&dir.path().join("missing")));
        assert!(!err.contains(&b64));

        // Binary junk (a bundle given as --key) and public keys, as strings
        // or in files, each get a message that says what is wrong.
        let binary = dir.path().join("b.bundle");
        std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x01]).unwrap();
        let err = load_signing_key(&binary).unwrap_err().to_string();
        assert!(err.contains("not an edgegate private key file"), "{err}");
        let pk = public_key(&key).to_string();
        let err = load_signing_key(Path::new(&pk)).unwrap_err().to_string();
        assert!(
            err.contains("a public key; signing needs the private key"),
            "{err}"
        );
        let pub_file = dir.path().join("s.pub");
        std::fs::write(&pub_file, format!("{pk}\n")).unwrap();
        let err = load_signing_key(&pub_file).unwrap_err().to_string();
        assert!(
            err.contains("a public key; signing needs the private key"),
            "{err}"
        );
    }
}
