//! `edgegate keygen`: a new key file, its public key on stdout.

use super::KeygenArgs;
use crate::keyfile;
use std::io::Write;

pub(super) fn keygen(a: &KeygenArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let key = keyfile::generate(&a.out)?;
    writeln!(out, "{}", keyfile::public_key(&key))?;
    Ok(())
}
