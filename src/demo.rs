//! `edgegated --demo`.

/// Run the demo until Ctrl-C.
pub async fn run() -> anyhow::Result<()> {
    anyhow::bail!("demo not built yet")
}
