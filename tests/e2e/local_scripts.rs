//! The local scripts' process bookkeeping (`deploy/local/lib.sh`, used by `infra` and `stack`):
//! a pid file is only "running" while its process is alive and still the program it names.

use std::path::Path;
use std::process::{Child, Command};

use ta_tests::{artifacts_dir, workspace_root};

/// `sh -c` on a lib.sh function, true when it succeeds.
fn lib(call: &str) -> bool {
    let lib = workspace_root().join("deploy/local/lib.sh");
    Command::new("bash")
        .arg("-c")
        .arg(format!("source '{}' && {call}", lib.display()))
        .status()
        .expect("running bash")
        .success()
}

/// A process named `name` (`sleep` through a symlink: a fresh copy could be "text file busy"
/// while another test thread forks) that sleeps until killed.
fn sleeper(dir: &Path, name: &str) -> Child {
    let exe = dir.join(name);
    let _ = std::fs::remove_file(&exe);
    std::os::unix::fs::symlink("/bin/sleep", &exe).expect("symlink /bin/sleep");
    Command::new(&exe)
        .arg("300")
        .spawn()
        .expect("start sleeper")
}

/// SIGKILL `child` and leave it unreaped: a zombie, which `kill -0` still finds.
fn zombie(child: &Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stat = format!("/proc/{pid}/stat");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&stat)
        .unwrap_or_default()
        .contains(") Z ")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} never became a zombie"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        Command::new("kill")
            .args(["-0", &pid])
            .status()
            .unwrap()
            .success(),
        "kill -0 finds the zombie (what the scripts used to rely on)"
    );
}

#[test]
fn a_zombie_or_a_pid_running_another_program_is_not_running() {
    let dir = artifacts_dir("local_scripts_pid");
    let mut live = sleeper(&dir, "ta-edge");
    let pid = live.id();
    assert!(lib(&format!("pid_alive {pid} ta-edge")));
    assert!(
        !lib(&format!("pid_alive {pid} tansu")),
        "a pid now running another program"
    );

    let mut dead = sleeper(&dir, "ta-loader");
    zombie(&dead);
    assert!(
        !lib(&format!("pid_alive {} ta-loader", dead.id())),
        "a zombie"
    );
    assert!(!lib(&format!("pid_running {}", dead.id())), "a zombie");
    assert!(lib(&format!("pid_running {pid}")));
    live.kill().unwrap();
    live.wait().unwrap();
    dead.wait().unwrap();
}

#[test]
fn stack_status_after_a_kill_9_reports_the_service_stopped_not_its_zombie() {
    let dir = artifacts_dir("local_scripts_stack");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut edge = sleeper(&dir, "ta-edge");
    zombie(&edge);
    std::fs::write(state.join("ta-edge.pid"), edge.id().to_string()).unwrap();
    let out = Command::new(workspace_root().join("deploy/local/stack"))
        .arg("status")
        .env("TA_LOCAL_DIR", &state)
        .output()
        .expect("running deploy/local/stack status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ta-edge: stopped"), "{text}");
    assert_eq!(out.status.code(), Some(3), "{text}");
    edge.wait().unwrap();
}
