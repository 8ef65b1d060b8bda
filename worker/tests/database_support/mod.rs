//! Throwaway PostgreSQL and MariaDB servers on loopback for the database tests, started once
//! per test binary, each with TLS (a test CA) and a user whose password is a canary.
//!
//! The servers run as their system users (`postgres`, `mysql`) from a temporary directory.
//! Because a `static` is never dropped, a watchdog shell process stops each server and
//! removes its directory once the test process has exited.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// The worker process, the `switchboard` binary and the other runtime helpers are shared with
// the runtime tests, and the servers' certificates come from the shared test PKI.
#[path = "../runtime_support/mod.rs"]
pub mod runtime_support;
pub use runtime_support::{free_port, switchboard_bin};
#[path = "../tls_support/mod.rs"]
mod tls_support;

/// The database user's password: it must appear in no output of the worker.
pub const CANARY_PASSWORD: &str = "canary-Pw-7f3a9c1e";
/// The database user.
pub const USER: &str = "switchboard";
/// The database.
pub const DATABASE: &str = "app";

/// A running server.
pub struct Server {
    /// Loopback port.
    pub port: u16,
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: String,
    /// Where the server lives (and the CA file).
    pub dir: PathBuf,
    /// The CA file.
    pub ca_file: PathBuf,
    /// Runs SQL as the administrator (`psql` or `mariadb` over the local socket).
    admin: Vec<String>,
}

impl Server {
    /// Run SQL as the administrator; stdout.
    pub fn admin_sql(&self, sql: &str) -> String {
        let out = Command::new(&self.admin[0])
            .args(&self.admin[1..])
            .arg(sql)
            .output()
            .expect("admin client");
        assert!(
            out.status.success(),
            "admin SQL failed: {}\n{}",
            sql,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn uid_gid(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, user]).output().expect("id");
        assert!(out.status.success(), "system user {user} is missing (install the server package)");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let status =
        Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(path).status().unwrap();
    assert!(status.success());
}

/// A CA and a server certificate for 127.0.0.1 and localhost: (ca pem, cert pem, key pem).
fn certificates() -> (String, String, String) {
    let pki = tls_support::Pki::new();
    let (cert, key) = pki.issue(&["localhost", "127.0.0.1"], 365);
    (std::fs::read_to_string(pki.ca_file()).unwrap(), cert, key)
}

/// Stop `pid` (SIGINT, then SIGKILL) and remove `dir` once this test process is gone.
// The server (and its watchdog) live as long as the test process; the watchdog stops
// the server after it, so nothing here waits for them.
#[allow(clippy::zombie_processes)]
fn watchdog(pid: u32, dir: &Path) {
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -INT {pid} 2>/dev/null; \
         for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 {pid} 2>/dev/null || break; sleep 1; done; \
         kill -KILL {pid} 2>/dev/null; rm -rf '{dir}'",
        me = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watchdog");
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn postgres_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (scripts/test-peers installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version with initdb").join(name)
}

/// The PostgreSQL server of this test binary.
pub fn postgres() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start_postgres)
}

// The server (and its watchdog) live as long as the test process; the watchdog stops
// the server after it, so nothing here waits for them.
#[allow(clippy::zombie_processes)]
fn start_postgres() -> Server {
    let (uid, gid) = uid_gid("postgres");
    let dir = tempfile::Builder::new().prefix("switchboard-pg-").tempdir().unwrap().keep();
    let data = dir.join("data");
    let (ca, cert, key) = certificates();
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, &ca).unwrap();
    std::fs::write(dir.join("server.crt"), &cert).unwrap();
    std::fs::write(dir.join("server.key"), &key).unwrap();
    std::fs::write(dir.join("admin-password"), "admin-password\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600))
        .unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown_tree(&dir, uid, gid);
    use std::os::unix::process::CommandExt;
    let out = Command::new(postgres_bin("initdb"))
        .uid(uid)
        .gid(gid)
        .current_dir(&dir)
        .env_remove("PGDATA")
        .args(["-D"])
        .arg(&data)
        .args(["-U", "admin", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync", "--pwfile"])
        .arg(dir.join("admin-password"))
        .output()
        .unwrap();
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    let child = Command::new(postgres_bin("postgres"))
        .uid(uid)
        .gid(gid)
        .current_dir(&dir)
        .arg("-D")
        .arg(&data)
        .args(["-c", &format!("port={port}"), "-c", "listen_addresses=127.0.0.1"])
        .args(["-c", &format!("unix_socket_directories={}", dir.display())])
        .args(["-c", "ssl=on"])
        .args(["-c", &format!("ssl_cert_file={}", dir.join("server.crt").display())])
        .args(["-c", &format!("ssl_key_file={}", dir.join("server.key").display())])
        .args(["-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("postgres.log")).unwrap())
        .spawn()
        .unwrap();
    watchdog(child.id(), &dir);
    let admin = vec![
        postgres_bin("psql").display().to_string(),
        "-h".into(),
        dir.display().to_string(),
        "-p".into(),
        port.to_string(),
        "-U".into(),
        "admin".into(),
        "-d".into(),
        "postgres".into(),
        "-v".into(),
        "ON_ERROR_STOP=1".into(),
        "-qAt".into(),
        "-c".into(),
    ];
    let server = Server { port, ca_pem: ca, dir: dir.clone(), ca_file, admin };
    wait_until("PostgreSQL", || {
        Command::new(postgres_bin("pg_isready"))
            .args(["-h", &dir.display().to_string(), "-p", &port.to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    server.admin_sql(&format!("CREATE USER {USER} PASSWORD '{CANARY_PASSWORD}'"));
    server.admin_sql(&format!("CREATE DATABASE {DATABASE} OWNER {USER}"));
    server
}

/// Run SQL in the test database as the administrator.
pub fn postgres_sql(sql: &str) -> String {
    let server = postgres();
    let mut args = server.admin.clone();
    let d = args.iter().position(|a| a == "postgres").unwrap();
    args[d] = DATABASE.into();
    // As the application user, so that the tables are its own.
    let sql = format!("SET ROLE {USER}; {sql}");
    let out = Command::new(&args[0]).args(&args[1..]).arg(&sql).output().unwrap();
    assert!(out.status.success(), "SQL failed: {sql}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The MariaDB server of this test binary.
pub fn mariadb() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start_mariadb)
}

// The server (and its watchdog) live as long as the test process; the watchdog stops
// the server after it, so nothing here waits for them.
#[allow(clippy::zombie_processes)]
fn start_mariadb() -> Server {
    let (uid, gid) = uid_gid("mysql");
    let dir = tempfile::Builder::new().prefix("switchboard-mariadb-").tempdir().unwrap().keep();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (ca, cert, key) = certificates();
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, &ca).unwrap();
    std::fs::write(dir.join("server.crt"), &cert).unwrap();
    std::fs::write(dir.join("server.key"), &key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown_tree(&dir, uid, gid);
    let out = Command::new("mariadb-install-db")
        .args([
            "--no-defaults",
            "--user=mysql",
            "--skip-test-db",
            "--auth-root-authentication-method=normal",
        ])
        .arg(format!("--datadir={}", data.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
    chown_tree(&dir, uid, gid);
    let port = free_port();
    let socket = dir.join("mysqld.sock");
    let child = Command::new("mariadbd")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
        .arg(format!("--port={port}"))
        .args(["--bind-address=127.0.0.1", "--user=mysql", "--skip-log-bin"])
        .args([
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=8M",
            "--innodb-flush-log-at-trx-commit=0",
        ])
        .arg(format!("--ssl-ca={}", ca_file.display()))
        .arg(format!("--ssl-cert={}", dir.join("server.crt").display()))
        .arg(format!("--ssl-key={}", dir.join("server.key").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("mariadb.log")).unwrap())
        .spawn()
        .unwrap();
    watchdog(child.id(), &dir);
    let admin = vec![
        "mariadb".into(),
        "--no-defaults".into(),
        "-uroot".into(),
        format!("--socket={}", socket.display()),
        "-N".into(),
        "-B".into(),
        "-e".into(),
    ];
    let server = Server { port, ca_pem: ca, dir: dir.clone(), ca_file, admin };
    wait_until("MariaDB", || {
        Command::new("mariadb-admin")
            .args(["--no-defaults", "-uroot", &format!("--socket={}", socket.display()), "ping"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    server.admin_sql(&format!(
        "CREATE DATABASE {DATABASE}; CREATE USER '{USER}'@'%' IDENTIFIED BY '{CANARY_PASSWORD}'; GRANT ALL ON {DATABASE}.* TO '{USER}'@'%';"
    ));
    server
}

/// Run SQL in the test database of MariaDB as root.
pub fn mariadb_sql(sql: &str) -> String {
    mariadb().admin_sql(&format!("USE {DATABASE}; {sql}"))
}

/// A credential directory with the database user and password.
pub fn credential_dir(root: &Path) -> PathBuf {
    let dir = root.join("db-credential");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("username"), USER).unwrap();
    std::fs::write(dir.join("password"), CANARY_PASSWORD).unwrap();
    dir
}

/// What a `run-once` printed and exited with.
pub struct RunOnce {
    /// Exit code.
    pub code: i32,
    /// The termination message.
    pub message: String,
    /// The log (stderr) and stdout.
    pub log: String,
}

/// The `run-once` command for `config_yaml`, with `data_dir` as its data directory and no
/// Kubernetes config (so the run state is kept in the data directory).
pub fn run_once_command(config_yaml: &str, data_dir: &Path) -> (Command, PathBuf) {
    std::fs::create_dir_all(data_dir).unwrap();
    let config = data_dir.join("worker.yaml");
    std::fs::write(&config, config_yaml).unwrap();
    let termination = data_dir.join("termination-log");
    std::fs::write(&termination, "").unwrap();
    let mut cmd = Command::new(switchboard_bin());
    cmd.args(["worker", "run-once", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--termination-log")
        .arg(&termination)
        .env("KUBECONFIG", data_dir.join("no-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "info");
    (cmd, termination)
}

/// Run `run-once` to the end.
pub fn run_once(config_yaml: &str, data_dir: &Path) -> RunOnce {
    let (mut cmd, termination) = run_once_command(config_yaml, data_dir);
    let out = cmd.output().unwrap();
    RunOnce {
        code: out.status.code().unwrap_or(-1),
        message: std::fs::read_to_string(termination).unwrap_or_default(),
        log: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The run state a run without cluster access left in its data directory.
pub fn run_state(data_dir: &Path) -> serde_json::Value {
    std::fs::read(data_dir.join("run-state.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(serde_json::Value::Null)
}

/// The head of a worker config for an Integration `acme/<name>` owned by `hr-platform`.
pub fn config_head(name: &str) -> String {
    config_head_in("acme", name)
}

/// [`config_head`] for an Integration in `namespace`.
pub fn config_head_in(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: worker.switchboard.dev/v1
kind: WorkerConfig
subject: {{kind: Integration, namespace: {namespace}, name: {name}}}
owner: {{team: hr-platform, contact: hr@example.com}}
dataFlow: {{sourceSystem: Workday, targetSystem: Directory, classification: pii}}
delivery:
  mode: synchronous
  retry: {{maxAttempts: 2, initialBackoffMs: 10, maxBackoffMs: 50}}
  deadLetterRetentionSeconds: 86400
  deadLetterMaxEntries: 100
  concurrency: 1
egress:
  allowCidrs: [127.0.0.0/8]
"
    )
}

/// The credentials block naming `dir` as the basic credential `db`.
pub fn credentials_yaml(dir: &Path) -> String {
    format!("credentials:\n  db: {{type: basic, directory: {}}}\n", dir.display())
}

/// An `endpoint:` block (a REST endpoint at `url`, one attempt, a lenient circuit breaker)
/// at `indent`.
pub fn endpoint_yaml(indent: &str, name: &str, url: &str, timeout_ms: u32) -> String {
    format!(
        "{indent}endpoint:\n{indent}  name: {name}\n{indent}  url: {url}\n{indent}  protocol: rest\n{indent}  timeoutMs: {timeout_ms}\n{indent}  retry: {{maxAttempts: 1, initialBackoffMs: 10, maxBackoffMs: 10}}\n{indent}  circuitBreaker: {{failureThreshold: 100, openForMs: 1000}}\n"
    )
}

/// A connection block for the PostgreSQL test server (verifyFull with the test CA).
pub fn postgres_connection_yaml(indent: &str) -> String {
    let server = postgres();
    format!(
        "{indent}connection:\n{indent}  driver: postgres\n{indent}  endpoint: postgres://127.0.0.1:{}/{DATABASE}\n{indent}  credential: db\n{indent}  tls: verifyFull\n{indent}  caFile: {}\n",
        server.port,
        server.ca_file.display()
    )
}
