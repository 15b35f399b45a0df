//! With the `python` feature the watcher links libpython. pyenv and other
//! non-system Pythons keep it outside the loader's default paths, so record the
//! library directory as an rpath: `cargo run`/`cargo nextest run` then work
//! without LD_LIBRARY_PATH. A system Python (`PYO3_PYTHON=/usr/bin/python3.11`)
//! resolves to /usr/lib/..., where the rpath is harmless.

fn main() {
    #[cfg(feature = "python")]
    {
        let config = pyo3_build_config::get();
        if let Some(dir) = &config.lib_dir {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
