//! What `edgegate bundle push` sends and how it reports the answer: a
//! bundle file, a key statement file (`edgegate keys init|rotate`), or,
//! with `--keys STATEMENT`, a key statement with the bundle riding along
//! (one push that rotates keys and installs a bundle signed by the new
//! ones: how a router is recovered from a leaked bundle key).

use edgegate_proto::authority::{encode_keys_delivery, Delivery};
use edgegate_proto::frame::PushResult;
use std::path::Path;

/// The bytes to push: `file` as it is, or with `keys` the statement of
/// that file and the bundle of `file` in one delivery.
pub(crate) fn read(file: &Path, keys: Option<&Path>) -> Result<Vec<u8>, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let bytes = read(file)?;
    let Some(keys) = keys else {
        return Ok(bytes);
    };
    if !matches!(Delivery::classify(&bytes), Ok(Delivery::Bundle(_))) {
        return Err(format!(
            "{}: with --keys, FILE must be a bundle",
            file.display()
        ));
    }
    let statement = read(keys)?;
    match Delivery::classify(&statement) {
        Ok(Delivery::Keys {
            statement,
            bundle: None,
        }) => Ok(encode_keys_delivery(statement, Some(&bytes))),
        _ => Err(format!(
            "--keys {}: not a key statement file (edgegate keys init|rotate writes one)",
            keys.display()
        )),
    }
}

/// The answer as lines for stdout, or the `rejected: …` line for stderr.
/// A key statement accepted with a bundle rejected prints the statement's
/// line and fails with the bundle's rejection.
pub(crate) fn render(result: &PushResult) -> (Vec<String>, Result<(), String>) {
    match result {
        PushResult::Accepted { serial } => (vec![format!("accepted serial {serial}")], Ok(())),
        PushResult::Unchanged { serial } => (vec![format!("unchanged serial {serial}")], Ok(())),
        PushResult::Rejected { code, message } => {
            (vec![], Err(super::connect::rejected(code, message)))
        }
        PushResult::Keys {
            version,
            changed,
            bundle,
        } => {
            let word = if *changed { "accepted" } else { "unchanged" };
            let mut lines = vec![format!("{word} key statement version {version}")];
            let Some(b) = bundle else {
                return (lines, Ok(()));
            };
            let (more, outcome) = render(b);
            lines.extend(more);
            (lines, outcome)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_with_a_bundle_reports_both() {
        let r = PushResult::Keys {
            version: 4,
            changed: true,
            bundle: Some(Box::new(PushResult::Accepted { serial: 1 })),
        };
        let (lines, ok) = render(&r);
        assert_eq!(
            lines,
            ["accepted key statement version 4", "accepted serial 1"]
        );
        assert!(ok.is_ok());
        let r = PushResult::Keys {
            version: 4,
            changed: false,
            bundle: Some(Box::new(PushResult::Rejected {
                code: "rollback".into(),
                message: "rollback: x".into(),
            })),
        };
        let (lines, err) = render(&r);
        assert_eq!(lines, ["unchanged key statement version 4"]);
        assert_eq!(err.unwrap_err(), "rejected: rollback: x");
    }
}
