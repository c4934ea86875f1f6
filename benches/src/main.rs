//! Capstan's benchmark entry point (scenarios are added by the issues that name them).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("no scenario yet")
}
