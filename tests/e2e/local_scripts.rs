//! The local scripts: their process bookkeeping (`deploy/local/lib.sh`, used by `infra` and
//! `stack`: a pid file is only "running" while its process is alive and still the program it
//! names), and `deploy/local/infra` itself, run against an instance of the test's own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use ta_tests::{artifacts_dir, free_port, workspace_root};

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

/// The ports of one `deploy/local/infra` instance.
#[derive(Debug, Clone, Copy)]
struct Ports {
    kafka: u16,
    clickhouse_http: u16,
    clickhouse_tcp: u16,
    prometheus: u16,
}

impl Ports {
    /// Four loopback ports free a moment ago (the caller retries on a clash).
    fn pick() -> Self {
        Self {
            kafka: free_port(),
            clickhouse_http: free_port(),
            clickhouse_tcp: free_port(),
            prometheus: free_port(),
        }
    }

    fn all(&self) -> [u16; 4] {
        [
            self.kafka,
            self.clickhouse_http,
            self.clickhouse_tcp,
            self.prometheus,
        ]
    }
}

/// A `deploy/local/infra` instance of the test's own: its state in `dir` (`TA_LOCAL_DIR`), its
/// services on `ports`. Stopped when dropped, so a failing test leaves no server behind.
struct Infra {
    dir: PathBuf,
    ports: Ports,
}

/// What one run of the script did.
struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Infra {
    fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(workspace_root().join("deploy/local/infra"))
            .args(args)
            .env("TA_LOCAL_DIR", &self.dir)
            .env("TA_KAFKA_PORT", self.ports.kafka.to_string())
            .env(
                "TA_CLICKHOUSE_HTTP_PORT",
                self.ports.clickhouse_http.to_string(),
            )
            .env(
                "TA_CLICKHOUSE_TCP_PORT",
                self.ports.clickhouse_tcp.to_string(),
            )
            .env("TA_PROMETHEUS_PORT", self.ports.prometheus.to_string())
            // Set, these point the script at existing servers (the default instance).
            .env_remove("TA_KAFKA_BROKERS")
            .env_remove("TA_CLICKHOUSE_URL")
            .env_remove("TA_PROMETHEUS_URL")
            .output()
            .expect("running deploy/local/infra");
        Run {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `up` on ports picked now; when one of them was taken before a service bound it (the
    /// script refuses a port in use, a server exits with "address already in use"), the
    /// instance is stopped and started again on other ports.
    fn up(dir: &Path) -> (Self, Run) {
        for _ in 0..5 {
            let _ = std::fs::remove_dir_all(dir);
            let infra = Self {
                dir: dir.to_path_buf(),
                ports: Ports::pick(),
            };
            let run = infra.run(&["up"]);
            let text = format!("{}{}", run.stdout, run.stderr).to_lowercase();
            if run.ok || !(text.contains("already in use") || text.contains("address in use")) {
                return (infra, run);
            }
            // Dropping `infra` stops what did start.
        }
        panic!("deploy/local/infra up found no free ports in five tries");
    }

    fn pid(&self, service: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("{service}.pid")))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    fn pids(&self) -> [Option<u32>; 3] {
        SERVICES.map(|s| self.pid(s))
    }
}

impl Drop for Infra {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

const SERVICES: [&str; 3] = ["kafka", "clickhouse", "prometheus"];

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A process that has not exited (a zombie counts as exited).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit(") ").next().and_then(|r| r.chars().next()),
            Some('Z' | 'X')
        )
    })
}

/// Poll `check` every 100 ms for up to 30 s.
fn within_30s(mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    true
}

/// `infra up` twice, `status`, `down` twice, on an instance of the test's own (its own state
/// directory and ports): the second `up` starts nothing, `down` stops everything it started
/// and a second `down` has nothing to do. The default instance is left as it was.
#[test]
fn infra_up_is_idempotent_and_down_stops_what_up_started() {
    let defaults = [9092, 8123, 9000, 9090];
    let defaults_open = defaults.map(port_open);
    let dir = artifacts_dir("local_scripts_infra").join("state");

    let (infra, first) = Infra::up(&dir);
    assert!(
        first.ok,
        "first up failed:\n{}\n{}",
        first.stdout, first.stderr
    );
    let pids = infra.pids();
    for (service, pid) in SERVICES.iter().zip(pids) {
        let pid = pid.unwrap_or_else(|| panic!("no pid file for {service}:\n{}", first.stdout));
        assert!(alive(pid), "{service} (pid {pid}) is not running");
        assert!(
            first
                .stdout
                .contains(&format!("{service}: started pid {pid}")),
            "{}",
            first.stdout
        );
    }

    // The generated configs follow the ports.
    let config = std::fs::read_to_string(dir.join("clickhouse/config.xml")).unwrap();
    let p = infra.ports;
    assert!(
        config.contains(&format!("<http_port>{}</http_port>", p.clickhouse_http)),
        "{config}"
    );
    assert!(
        config.contains(&format!("<tcp_port>{}</tcp_port>", p.clickhouse_tcp)),
        "{config}"
    );
    let prometheus = std::fs::read_to_string(dir.join("prometheus.yml")).unwrap();
    assert!(
        prometheus.contains(&format!("127.0.0.1:{}", p.prometheus)),
        "{prometheus}"
    );
    assert!(!prometheus.contains("127.0.0.1:9090"), "{prometheus}");

    // The services answer on the instance's ports, each as what it is.
    assert!(lib(&format!("kafka_answers 127.0.0.1 {}", p.kafka)));
    assert!(
        !lib(&format!("kafka_answers 127.0.0.1 {}", p.clickhouse_http)),
        "the Kafka probe takes ClickHouse's HTTP port for a broker"
    );
    assert!(lib(&format!(
        "http_ok http://127.0.0.1:{}/ping Ok",
        p.clickhouse_http
    )));
    assert!(port_open(p.clickhouse_tcp));
    assert!(lib(&format!(
        "http_ok http://127.0.0.1:{}/-/ready",
        p.prometheus
    )));

    let second = infra.run(&["up"]);
    assert!(
        second.ok,
        "second up failed:\n{}\n{}",
        second.stdout, second.stderr
    );
    assert_eq!(infra.pids(), pids, "the second up changed the pid files");
    assert!(!second.stdout.contains("started pid"), "{}", second.stdout);
    for (service, pid) in SERVICES.iter().zip(pids) {
        let pid = pid.unwrap();
        assert!(alive(pid), "{service} (pid {pid}) stopped");
        assert!(
            second
                .stdout
                .contains(&format!("{service}: already running, reused: pid {pid}")),
            "{}",
            second.stdout
        );
    }

    let status = infra.run(&["status"]);
    assert_eq!(status.code, Some(0), "{}\n{}", status.stdout, status.stderr);
    for (service, pid) in SERVICES.iter().zip(pids) {
        let line = format!("{service}: running (pid {}", pid.unwrap());
        assert!(status.stdout.contains(&line), "{}", status.stdout);
    }

    let down = infra.run(&["down"]);
    assert!(down.ok, "down failed:\n{}\n{}", down.stdout, down.stderr);
    for (service, pid) in SERVICES.iter().zip(pids) {
        let pid = pid.unwrap();
        assert!(
            down.stdout
                .contains(&format!("{service}: stopped pid {pid}")),
            "{}",
            down.stdout
        );
        assert!(
            within_30s(|| !alive(pid)),
            "{service} (pid {pid}) still running after down"
        );
        assert!(infra.pid(service).is_none(), "{service}.pid left behind");
    }
    for port in p.all() {
        assert!(
            within_30s(|| !port_open(port)),
            "port {port} still open after down"
        );
    }

    let again = infra.run(&["down"]);
    assert!(
        again.ok,
        "second down failed:\n{}\n{}",
        again.stdout, again.stderr
    );
    for service in SERVICES {
        assert!(
            again.stdout.contains(&format!("{service}: not running")),
            "{}",
            again.stdout
        );
    }
    let status = infra.run(&["status"]);
    assert_eq!(status.code, Some(3), "{}", status.stdout);

    assert_eq!(
        defaults.map(port_open),
        defaults_open,
        "the default instance's ports changed state"
    );
}
