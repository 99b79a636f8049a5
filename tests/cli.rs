//! The command line without AWS: help texts, usage errors and configuration errors.

mod support;

use support::{root, run};

fn tugboat() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tugboat"));
    cmd.env_remove("TUGBOAT_CONFIG").current_dir(root());
    cmd
}

#[test]
fn help_is_useful_to_a_newcomer() {
    let out = run(tugboat().arg("--help"));
    assert_eq!(out.code, 0);
    for word in ["migrate", "send", "Exit codes", "TUGBOAT__"] {
        assert!(
            out.stdout.contains(word),
            "{word} missing from:\n{}",
            out.stdout
        );
    }
    for sub in ["migrate", "send"] {
        let out = run(tugboat().args([sub, "--help"]));
        assert_eq!(out.code, 0, "{sub}");
        assert!(out.stdout.contains("Usage: tugboat"), "{}", out.stdout);
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["frobnicate"],
        vec!["send"],
        vec!["send", "--queue"],
        vec![],
    ] {
        let out = run(tugboat().args(&args));
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
}

/// Bad configuration exits 2 and names the key.
#[test]
fn config_errors_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[aws]\nregion = \"us-east-1\"\n[[queues]]\nname = \"q\"\n";
    let service = "[services.auth]\ncluster = \"c\"\ntask_definition = \"t\"\ncontainer_name = \"a\"\ncontainer_port = 80\nsubnets = [\"s\"]\n";
    for (text, key, part) in [
        (
            format!("{base}colour = \"blue\"\n"),
            "queues[0].colour",
            "unknown field `colour`",
        ),
        (
            format!("{base}concurrency = \"lots\"\n"),
            "queues[0].concurrency",
            "invalid type",
        ),
        (
            format!(
                "{base}[[routes]]\nname = \"r\"\npattern = {{ source = [\"x\"] }}\nworkflow = \"teleport\"\n"
            ),
            "routes[0].workflow",
            "unknown workflow \"teleport\"",
        ),
        (
            format!("{base}{service}"),
            "services.auth",
            "missing field `target_group`",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, &text).unwrap();
        let event = dir.path().join("e.json");
        std::fs::write(&event, "{}").unwrap();
        let out = run(tugboat()
            .arg("--config")
            .arg(&path)
            .args(["send", "--queue", "q"])
            .arg(&event));
        assert_eq!(out.code, 2, "{text}\n{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("bad.toml: {key}: ")),
            "{text}\n{}",
            out.stderr
        );
        assert!(out.stderr.contains(part), "{text}\n{}", out.stderr);
    }
}

#[test]
fn a_missing_config_file_exits_2() {
    let out = run(tugboat().args([
        "--config",
        "/nonexistent/t.toml",
        "send",
        "--queue",
        "q",
        "-",
    ]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("/nonexistent/t.toml"), "{}", out.stderr);
}
