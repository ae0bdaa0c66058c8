//! Writes the edge fuzz target's seed inputs into a directory (`server/fuzz/README.md`).
fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "server/fuzz/corpus/edge".into());
    std::fs::create_dir_all(&dir)?;
    for (i, seed) in imsgw::edge::fuzz::seeds().into_iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i}"), seed)?;
    }
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sip/tests/rfc4475"))? {
        let entry = entry?;
        let bytes = std::fs::read(entry.path())?;
        for op in [0u8, 2] {
            let mut input = vec![1u8];
            input.extend(imsgw::edge::fuzz::record(op, &bytes));
            let name = entry.file_name().to_string_lossy().into_owned();
            std::fs::write(format!("{dir}/rfc4475-{op}-{name}"), input)?;
        }
    }
    Ok(())
}
