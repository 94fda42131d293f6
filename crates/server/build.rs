//! Embeds the built web console (trunk's `dist/`) in the binary: in a release build when the
//! workspace's `dist/index.html` exists, and in any build when `HERALD_EMBED_CONSOLE` names a
//! built console's directory (`cargo xtask dist` and `cargo xtask test` set it). Writes
//! `console.rs` into `OUT_DIR`: the files, each with its content type and entity tag.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HERALD_EMBED_CONSOLE");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let named = std::env::var_os("HERALD_EMBED_CONSOLE").filter(|dir| !dir.is_empty());
    let release = std::env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let dir = match named {
        Some(dir) => Some(manifest_dir.join(dir)),
        None if release => Some(manifest_dir.join("../../dist")),
        None => None,
    };
    let mut files = Vec::new();
    if let Some(dir) = dir.filter(|dir| dir.join("index.html").is_file()) {
        println!("cargo:rerun-if-changed={}", dir.display());
        collect(&dir, &dir, &mut files);
        files.sort();
    }
    let mut code = String::from("&[\n");
    for (path, file) in &files {
        let bytes = std::fs::read(file).expect("a console file is readable");
        let _ = writeln!(
            code,
            "    ConsoleFile {{ path: {path:?}, body: include_bytes!({file:?}), content_type: {:?}, etag: \"\\\"{:016x}\\\"\" }},",
            content_type(path),
            fnv1a(&bytes),
        );
    }
    code.push_str("]\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("console.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

/// Every file under `dir`, as (its path relative to `root` with `/` separators, its path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).expect("the console directory is readable");
    for entry in entries {
        let path = entry.expect("the console directory is readable").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let name = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let absolute = path.canonicalize().unwrap_or(path);
            files.push((name, absolute));
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// A 64-bit FNV-1a hash: the entity tag of a file's content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
