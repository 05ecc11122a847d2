//! Embeds the repository's `environments/*.toml` in the library, so a binary
//! deployed on its own still knows every environment.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dir = manifest.join("../../environments");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<(String, PathBuf)> = match fs::read_dir(&dir) {
        Ok(read) => read
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .filter_map(|path| {
                let name = path.file_stem()?.to_str()?.to_owned();
                let path = path.canonicalize().ok()?;
                Some((name, path))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    entries.sort();
    let mut code = String::from("/// Environment files embedded at build time: (name, contents).\npub(crate) const EMBEDDED: &[(&str, &str)] = &[\n");
    for (name, path) in &entries {
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded.rs");
    fs::write(out, code).expect("write embedded.rs");
}
