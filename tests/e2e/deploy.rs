//! The compose file for Docker users must match the binaries and the shipped config files.

use std::collections::BTreeMap;
use std::process::Command;

use ta_tests::{binary, workspace_root};

/// Per compose service: the `TA_*` variables it sets and its build `BIN` argument.
fn compose_services() -> BTreeMap<String, (Vec<String>, Option<String>)> {
    let text = std::fs::read_to_string(workspace_root().join("deploy/compose.yaml")).unwrap();
    let mut services = BTreeMap::new();
    let mut in_services = false;
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("services:") {
            in_services = true;
            continue;
        }
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_services = false;
        }
        if !in_services {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            current = Some(name.to_owned());
            services.insert(name.to_owned(), (Vec::new(), None));
            continue;
        }
        let Some(svc) = current.as_ref() else {
            continue;
        };
        let trimmed = line.trim();
        if let Some((key, _)) = trimmed.split_once(':')
            && key.starts_with("TA_")
        {
            services.get_mut(svc).unwrap().0.push(key.to_owned());
        }
        if let Some(bin) = trimmed.strip_prefix("BIN: ") {
            services.get_mut(svc).unwrap().1 = Some(bin.to_owned());
        }
    }
    services
}

#[test]
fn every_variable_the_compose_file_sets_is_one_the_binary_reads() {
    let services = compose_services();
    let ours: Vec<_> = services
        .iter()
        .filter(|(_, (_, bin))| bin.is_some())
        .collect();
    assert_eq!(
        ours.len(),
        3,
        "compose builds ta-edge, ta-loader and ta-query: {services:?}"
    );
    for (name, (vars, bin)) in ours {
        let bin = bin.as_ref().unwrap();
        assert_eq!(name, bin, "service {name} builds binary {bin}");
        let help = Command::new(binary(bin)).arg("--help").output().unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        assert!(!vars.is_empty(), "{name} sets no TA_* variables");
        for var in vars {
            assert!(
                help.contains(&format!("[env: {var}")),
                "{name} sets {var}, which `{bin} --help` does not list"
            );
        }
    }
}

#[test]
fn files_the_compose_file_mounts_exist_in_the_repository() {
    let deploy = workspace_root().join("deploy");
    let text = std::fs::read_to_string(deploy.join("compose.yaml")).unwrap();
    let mounts: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- ./"))
        .map(|m| m.split(':').next().unwrap())
        .collect();
    assert!(
        mounts.contains(&"config/sites.dev.toml"),
        "compose mounts the dev sites file: {mounts:?}"
    );
    for m in mounts {
        assert!(
            deploy.join(m).exists(),
            "compose mounts ./{m}, which does not exist"
        );
    }
    let dockerfile = std::fs::read_to_string(deploy.join("docker/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("USER tiny"),
        "images run as a non-root user"
    );
}
