//! A real nginx running the shipped `deploy/nginx/` site, started by the tests on a free port
//! from a generated `nginx.conf` (never the system service): the forward-auth tests put it in
//! front of sessiond and a recording upstream, the rolling-restart test in front of two
//! instances.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::helpers::free_port;

fn read_repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// The nginx binary: `NGINX_BIN`, else `nginx` on PATH, else Debian's `/usr/sbin/nginx` (not on
/// an ordinary user's PATH). Fails, naming the package, when there is none.
pub(crate) fn nginx_bin() -> String {
    let runs = |bin: &str| Command::new(bin).arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if let Ok(bin) = std::env::var("NGINX_BIN") {
        return match runs(&bin) {
            Ok(_) => bin,
            Err(e) => panic!("NGINX_BIN={bin} does not run: {e}"),
        };
    }
    for bin in ["nginx", "/usr/sbin/nginx"] {
        match runs(bin) {
            Ok(_) => return bin.to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot run `{bin} -v`: {e}"),
        }
    }
    panic!(
        "nginx not found on PATH: these tests run a real nginx in front of sessiond. Install it with \
         `apt-get install -y nginx-light` (or run ./test, which installs it), or point NGINX_BIN at an \
         nginx binary with the auth_request module"
    );
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The main and http{} context the shipped site expects from nginx.conf (as the nginx image's
/// own nginx.conf gives its conf.d/), every path inside `dir`, including `includes`.
pub(crate) fn wrapper_config(dir: &Path, includes: &[&Path]) -> String {
    let d = dir.display();
    // Run as the current user: as root, nginx would otherwise switch its workers to `nobody`,
    // who cannot use this directory.
    let user = if id("-u") == "0" { format!("user {} {};\n", id("-un"), id("-gn")) } else { String::new() };
    let includes: String = includes.iter().map(|p| format!("    include {};\n", p.display())).collect();
    format!(
        "{user}worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\n\
         events {{\n    worker_connections 1024;\n}}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/temp/body;\n\
         \x20   proxy_temp_path {d}/temp/proxy;\n\
         \x20   fastcgi_temp_path {d}/temp/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/temp/uwsgi;\n\
         \x20   scgi_temp_path {d}/temp/scgi;\n\
         {includes}}}\n"
    )
}

/// `deploy/nginx/upstreams.conf` with the servers of each `upstream` block replaced by
/// `servers` (the parameters of the block's first `server` line kept).
pub(crate) fn substitute_upstreams(shipped: &str, servers: &[(&str, Vec<SocketAddr>)]) -> String {
    let mut out = String::new();
    let mut block: Option<&str> = None;
    let mut replaced: Vec<&str> = Vec::new();
    for line in shipped.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("upstream ").and_then(|rest| rest.strip_suffix('{')) {
            block = servers.iter().map(|(n, _)| *n).find(|n| *n == name.trim());
            assert!(block.is_some(), "upstreams.conf defines `{}`, which this test does not know", name.trim());
        } else if trimmed == "}" {
            block = None;
        } else if let (Some(name), Some(rest)) = (block, trimmed.strip_prefix("server ")) {
            if !replaced.contains(&name) {
                replaced.push(name);
                let indent = &line[..line.len() - line.trim_start().len()];
                let params = rest.trim_end_matches(';').split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
                let addrs = &servers.iter().find(|(n, _)| *n == name).expect("known block").1;
                for addr in addrs {
                    out.push_str(&format!("{indent}server {addr} {params};\n").replace(" ;", ";"));
                }
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (name, _) in servers {
        assert!(replaced.contains(name), "upstreams.conf has no `server` line in `upstream {name}`");
    }
    out
}

/// A running nginx with the shipped site, on a free port.
pub(crate) struct Nginx {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Nginx {
    /// The shipped configuration in front of `sessiond` (one upstream group of all of them)
    /// and `app`.
    pub(crate) fn start(sessiond: &[SocketAddr], app: SocketAddr) -> Self {
        let bin = nginx_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("temp")).expect("temp/");
        let port = free_port();

        let site = read_repo_file("deploy/nginx/sessiond-auth.conf");
        assert_eq!(site.matches("listen 8080;").count(), 1, "sessiond-auth.conf should listen once, on 8080");
        let site = site.replace("listen 8080;", &format!("listen 127.0.0.1:{port};"));
        let upstreams = substitute_upstreams(
            &read_repo_file("deploy/nginx/upstreams.conf"),
            &[("sessiond", sessiond.to_vec()), ("protected_app", vec![app])],
        );
        let (site_path, upstreams_path) = (dir.path().join("sessiond-auth.conf"), dir.path().join("upstreams.conf"));
        std::fs::write(&site_path, site).expect("write the site");
        std::fs::write(&upstreams_path, upstreams).expect("write the upstreams");
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, wrapper_config(dir.path(), &[&upstreams_path, &site_path])).expect("write nginx.conf");

        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr file");
        let child = Command::new(&bin)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client");
        let mut nginx = Self { child: Some(child), port, dir, client };
        nginx.wait_listening();
        nginx
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                panic!("nginx exited with {status} at start-up:\n{}", self.logs());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "nginx did not listen on {} within 10 s:\n{}", self.port, self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// nginx's standard error and error log.
    pub(crate) fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// `GET path` as an API client: with `Accept: application/json` and a bearer token.
    pub(crate) async fn api_get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path)
            .header("accept", "application/json")
            .bearer_auth(token)
            .send()
            .await
            .expect("request through nginx")
    }

    /// The status of `GET path` with a bearer token.
    pub(crate) async fn status(&self, path: &str, token: &str) -> StatusCode {
        self.api_get(path, token).await.status()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the master stops its workers, then exits.
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
