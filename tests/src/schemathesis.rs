//! Schemathesis (PyPI), the property-based OpenAPI tester: installed on
//! first use into a virtual environment under the target directory, at a
//! pinned version so a run's verdict does not change with a release.

use crate::target_dir;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The version the conformance test runs (its checks and their defaults
/// change between releases).
pub const VERSION: &str = "4.32.5";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run `{program}`: {e} (this test needs python3)"))
}

/// The `st` executable of schemathesis [`VERSION`], installing it from PyPI
/// into `<target>/schemathesis-venv` when it is missing or another version.
pub fn ensure_installed() -> PathBuf {
    let venv = target_dir().join("schemathesis-venv");
    let st = venv.join("bin/st");
    let installed = || {
        st.is_file()
            && String::from_utf8_lossy(&run(st.to_str().unwrap(), &["--version"]).stdout)
                .contains(VERSION)
    };
    if installed() {
        return st;
    }
    let venv_str = venv.to_str().expect("UTF-8 target path");
    if !venv.join("bin/pip").is_file() {
        let out = run("python3", &["-m", "venv", venv_str]);
        assert!(
            out.status.success(),
            "could not create a virtual environment at {venv_str} for schemathesis \
             (install python3 with the venv module): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pip = venv.join("bin/pip");
    let out = run(
        pip.to_str().unwrap(),
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("schemathesis=={VERSION}"),
        ],
    );
    assert!(
        out.status.success() && installed(),
        "could not install schemathesis=={VERSION} from PyPI into {venv_str} \
         (is PyPI reachable?): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    st
}
