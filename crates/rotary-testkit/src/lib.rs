//! Dev-only test kit: throwaway PostgreSQL servers started from Debian's
//! server binaries (SCRAM-SHA-256 only, random port, temp directory, run as
//! the `postgres` OS user when the tests run as root), and the paths of the
//! seed function runner. Tests never touch the machine's own database services.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the failure report

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Python script that runs the seed function against a local server.
pub fn seed_runner() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/seed_runner.py")
}

/// The fixture copy of the seed function.
pub fn seed_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/seed/rotation_function.py")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Debian puts server binaries in /usr/lib/postgresql/<major>/bin; take the newest.
pub fn pg_bin_dir() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries missing: run scripts/test-deps (Debian package postgresql)")
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("no /usr/lib/postgresql/<version>/bin/initdb").1
}

/// uid/gid of the `postgres` OS user when running as root (initdb refuses root).
fn run_as() -> Option<(u32, u32)> {
    let is_root = Command::new("id").arg("-u").output().ok().map(|o| o.stdout.starts_with(b"0\n")) == Some(true);
    if !is_root {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let o = Command::new("id").args([flag, "postgres"]).output().expect("id postgres");
        String::from_utf8_lossy(&o.stdout).trim().parse().expect("postgres OS user exists")
    };
    Some((id("-u"), id("-g")))
}

fn command(bin: &Path, user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(bin);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c.env_remove("PGPASSWORD").env("LC_ALL", "C.UTF-8");
    c
}

pub struct PgServer {
    pub port: u16,
    pub superuser: String,
    pub superuser_password: String,
    child: Option<Child>,
    args: Vec<String>,
    user: Option<(u32, u32)>,
    dir: tempfile::TempDir,
    certs: Option<tempfile::TempDir>,
}

impl PgServer {
    /// Starts a new server. `settings` are extra `-c name=value` options
    /// (e.g. `("log_statement", "all")`).
    pub fn start(settings: &[(&str, &str)]) -> PgServer {
        let bin = pg_bin_dir();
        let user = run_as();
        let dir = tempfile::Builder::new().prefix("rotary-pg-").tempdir().unwrap();
        let chown = |p: &Path| {
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
            }
        };
        chown(dir.path());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let pwfile = dir.path().join("pw");
        let password = format!("su-{}", std::process::id());
        std::fs::write(&pwfile, &password).unwrap();
        chown(&pwfile);
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), user)
            .args(["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null())
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let mut args: Vec<String> = vec![
            "-D".into(),
            data.to_str().unwrap().into(),
            "-p".into(),
            port.to_string(),
            "-k".into(),
            dir.path().to_str().unwrap().into(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            "fsync=off".into(),
            "-c".into(),
            "password_encryption=scram-sha-256".into(),
            "-c".into(),
            "logging_collector=off".into(),
        ];
        for (k, v) in settings {
            args.push("-c".into());
            args.push(format!("{k}={v}"));
        }
        let mut server = PgServer {
            port,
            superuser: "postgres".into(),
            superuser_password: password,
            child: None,
            args,
            user,
            dir,
            certs: None,
        };
        server.resume();
        server
    }

    /// Starts a server with TLS on (a throwaway CA and a server certificate
    /// for `localhost` and `127.0.0.1`); `ca_file()` is the CA to trust.
    pub fn start_tls(settings: &[(&str, &str)]) -> PgServer {
        let certs = tempfile::Builder::new().prefix("rotary-pg-certs-").tempdir().unwrap();
        let (ca, cert, key) = make_certs(certs.path(), "rotary-test-ca");
        let user = run_as();
        for f in [&cert, &key] {
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(f, Some(uid), Some(gid)).unwrap();
            }
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(certs.path(), Some(uid), Some(gid)).unwrap();
        }
        let cert_s = format!("{}", cert.display());
        let key_s = format!("{}", key.display());
        let mut all: Vec<(&str, &str)> = vec![("ssl", "on"), ("ssl_cert_file", &cert_s), ("ssl_key_file", &key_s)];
        all.extend_from_slice(settings);
        let mut s = PgServer::start(&all);
        let kept = s.dir.path().join("ca.crt");
        std::fs::copy(&ca, &kept).unwrap();
        s.certs = Some(certs);
        s
    }

    /// The CA certificate of a TLS server (see `start_tls`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Starts the (stopped) server again on the same port and data.
    pub fn resume(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("server.log")).unwrap();
        let child = command(&pg_bin_dir().join("postgres"), self.user)
            .args(&self.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Stops the server at once (immediate shutdown), keeping its data.
    pub fn halt(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-QUIT", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let isready = pg_bin_dir().join("pg_isready");
        while Instant::now() < deadline {
            let ok = Command::new(&isready)
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("PostgreSQL did not become ready; log:\n{}", self.log());
    }

    /// Everything the server logged (statement logs included when enabled).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn conn_string(&self, user: &str, password: &str, db: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(self.port).user(user).password(password).dbname(db);
        c.connect_timeout(Duration::from_secs(10));
        c
    }

    /// Runs SQL as the superuser.
    pub async fn exec(&self, sql: &str) {
        let (client, conn) = self
            .conn_string(&self.superuser, &self.superuser_password, "postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .expect("superuser connects");
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("SQL failed: {e}"));
    }

    /// Creates a login role. The password is sent as a SCRAM verifier, so it
    /// is not in the server's statement log either.
    pub async fn create_role(&self, name: &str, password: &str) {
        let ident = format!("\"{}\"", name.replace('"', "\"\""));
        let verifier = rotary_rotators::postgres::scram_verifier(password, b"rotary-testkit-s", 4096);
        self.exec(&format!("CREATE ROLE {ident} LOGIN PASSWORD '{verifier}'")).await;
    }

    /// Whether `user` can log in with `password` (to database `postgres`).
    pub async fn can_login(&self, user: &str, password: &str) -> bool {
        match self.conn_string(user, password, "postgres").connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                client.simple_query("SELECT 1").await.is_ok()
            }
            Err(_) => false,
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A CA and a server certificate for `localhost`/`127.0.0.1` (EC P-256), made
/// with the openssl command; returns (ca.crt, server.crt, server.key).
pub fn make_certs(dir: &Path, ca_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(f);
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let subj = format!("/CN={ca_name}");
    let mut ca_args = vec!["req", "-x509"];
    ca_args.extend_from_slice(&ec);
    ca_args.extend_from_slice(&["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", &subj]);
    ca_args.extend_from_slice(&[
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&ca_args);
    let mut csr_args = vec!["req"];
    csr_args.extend_from_slice(&ec);
    csr_args.extend_from_slice(&["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    run(&csr_args);
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (p("ca.crt"), p("server.crt"), p("server.key"))
}

/// A throwaway MariaDB server (Debian's `mariadb-server` binaries): own data
/// directory, random port, `mysql` OS user when run as root, general query log
/// on (tests search it for passwords). Set-up SQL goes through the `mariadb`
/// client as root over the private socket.
pub struct MariaServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl MariaServer {
    pub fn start() -> MariaServer {
        let dir = tempfile::Builder::new().prefix("rotary-maria-").tempdir().unwrap();
        let is_root = Command::new("id").arg("-u").output().ok().map(|o| o.stdout.starts_with(b"0\n")) == Some(true);
        if is_root {
            let _ = Command::new("chown").args(["mysql:mysql", dir.path().to_str().unwrap()]).status();
        }
        let data = dir.path().join("data");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root {
            install.arg("--user=mysql");
        }
        assert!(install.status().expect("mariadb-install-db runs").success(), "mariadb-install-db failed");
        let port = free_port();
        let mut cmd = Command::new("/usr/sbin/mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--log-error={}", dir.path().join("error.log").display()))
            .arg("--general-log=1")
            .arg(format!("--general-log-file={}", dir.path().join("general.log").display()))
            .arg("--skip-name-resolve")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root {
            cmd.arg("--user=mysql");
        }
        let child = cmd.spawn().expect("mariadbd starts");
        let server = MariaServer { port, child: Some(child), dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.try_sql("SELECT 1") {
            assert!(Instant::now() < deadline, "MariaDB did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn try_sql(&self, sql: &str) -> bool {
        Command::new("mariadb")
            .args(["--no-defaults", "-u", "root", "-S", self.dir.path().join("sock").to_str().unwrap(), "-e", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Runs SQL as root (setup only).
    pub fn exec(&self, sql: &str) {
        assert!(self.try_sql(sql), "SQL failed");
    }

    /// Creates `'user'@'%'` with a password. Setup only: the password is sent
    /// as its native hash, so it is not in the query log.
    pub fn create_user(&self, user: &str, password: &str) {
        let q = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
        let hash = rotary_rotators::mysql::native_password_hash(password);
        // The session's own sql_mode: the quoting above assumes backslash escapes.
        self.exec(&format!("SET SESSION sql_mode = ''; CREATE USER {}@'%' IDENTIFIED BY PASSWORD '{hash}'", q(user)));
    }

    pub async fn can_login(&self, user: &str, password: &str) -> bool {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false);
        match mysql_async::Conn::new(opts).await {
            Ok(c) => {
                let _ = c.disconnect().await;
                true
            }
            Err(_) => false,
        }
    }

    pub fn general_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.path().join("general.log")).unwrap_or_default()).into_owned()
    }
}

impl Drop for MariaServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_fixture_is_the_unmodified_seed() {
        let ours = std::fs::read(super::seed_fixture()).unwrap();
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/seed/rotation_function.py");
        if let Ok(theirs) = std::fs::read(&shared) {
            assert_eq!(ours, theirs, "the fixture must be the seed byte for byte");
        }
        let text = String::from_utf8(ours).unwrap();
        assert!(text.starts_with("import hmac") && text.contains("def main(args):"));
    }

    #[tokio::test]
    async fn a_throwaway_server_authenticates_with_scram_only() {
        let pg = super::PgServer::start(&[]);
        pg.create_role("kit_user", "kit-pw-1").await;
        assert!(pg.can_login("kit_user", "kit-pw-1").await);
        assert!(!pg.can_login("kit_user", "wrong").await);
        let hba = std::fs::read_to_string(pg.dir.path().join("data/pg_hba.conf")).unwrap();
        assert!(
            hba.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).all(|l| l.contains("scram-sha-256"))
        );
    }

    #[tokio::test]
    async fn a_throwaway_mariadb_takes_native_password_hashes() {
        let m = super::MariaServer::start();
        m.create_user("kit'user", "kit-pw-'\\-1");
        assert!(m.can_login("kit'user", "kit-pw-'\\-1").await);
        assert!(!m.can_login("kit'user", "wrong").await);
        assert!(!m.general_log().contains("kit-pw-"), "set-up passwords stay out of the query log");
    }
}
