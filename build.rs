//! Adds an rpath to the project-local libtorch so `cargo run/test/bench` need no LD_LIBRARY_PATH.
//! With the `cuda` feature, keeps libtorch_cuda linked (nothing references it by symbol, so the
//! linker would drop it and libtorch would see no GPU): see docs/GPU.md.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(dir) = std::env::var("LIBTORCH") {
        let dir = std::path::Path::new(&dir);
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}/lib", dir.display());
        if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-L{}/lib", dir.display());
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
}
