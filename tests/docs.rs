//! The documentation stays true to the code.

/// Every configuration variable is in the README's reference.
#[test]
fn readme_documents_every_variable() {
    let readme = include_str!("../README.md");
    for name in camrelay_config::known_variables() {
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is missing from README.md"
        );
    }
    for option in camrelay_config::PER_CAMERA_OPTIONS {
        assert!(
            readme.contains(&format!("_{option}`")),
            "per-camera {option} is missing from README.md"
        );
    }
}

/// The README's two set-up commands are the ones CI runs.
#[test]
fn ci_runs_the_readme_test_command() {
    let readme = include_str!("../README.md");
    let ci = include_str!("../.ci/run");
    let command = "cargo test --workspace --release";
    assert!(readme.contains(command));
    assert!(ci.contains(command));
    assert!(readme.contains("cargo run --release -- demo"));
}
