//! For the real builder's tests: a local OCI registry (Debian's
//! `docker-registry`, plain HTTP on 127.0.0.1) and git repositories made
//! in a temp dir. Tests that need them skip with the reason printed when
//! podman, git or the registry is missing, unless `DEPLOYD_REQUIRE_PODMAN`
//! is set, in which case they fail.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::http::get_path;
use super::podman;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// `true` when podman, git and the registry are all here; otherwise prints
/// why the test is skipped (or panics when they are required).
pub fn available(test: &str) -> bool {
    if !podman::available(test) {
        return false;
    }
    let reason = if !Path::new(REGISTRY_BIN).exists() {
        format!("no {REGISTRY_BIN} (Debian package docker-registry)")
    } else if !Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        "git is not installed".to_string()
    } else {
        return true;
    };
    if std::env::var_os(podman::REQUIRE).is_some() {
        panic!("{test}: {} is set but {reason}", podman::REQUIRE);
    }
    eprintln!("skipping {test}: {reason}");
    false
}

/// A registry serving from a temp dir; stopped when dropped.
pub struct Registry {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // The registry takes an address, not a listening socket: take a
        // free port from the kernel and hand it over.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("registry config");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Self {
            addr,
            child,
            _dir: dir,
        };
        super::eventually("the registry answers", Duration::from_secs(20), || async {
            let up = tokio::net::TcpStream::connect(addr).await.is_ok();
            (up && registry.get("/v2/").await.0 == 200).then_some(())
        })
        .await;
        registry
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let answer = get_path(self.addr, &self.host(), path, &[]).await;
        (answer.status, answer.body)
    }

    /// The tags the registry lists for `name`.
    pub async fn tags(&self, name: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/v2/{name}/tags/list")).await;
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "{body}");
        let listed: serde_json::Value = serde_json::from_str(&body).expect("tags json");
        let mut tags: Vec<String> = listed["tags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Whether the registry holds the manifest `name@digest`.
    pub async fn has(&self, name: &str, digest: &str) -> bool {
        let path = format!("/v2/{name}/manifests/{digest}");
        let answer = get_path(
            self.addr,
            &self.host(),
            &path,
            &[(
                "accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            )],
        )
        .await;
        answer.status == 200
    }
}

/// A git repository in a temp dir whose commits are tiny web images: a
/// static busybox serving `www/index.html` on `$PORT`.
pub struct Repo {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Repo {
    pub fn new() -> Self {
        Self::at(tempfile::tempdir().expect("temp dir"), "")
    }

    /// A repository at `relative` (created) inside `dir`.
    pub fn at(dir: tempfile::TempDir, relative: &str) -> Self {
        let path = dir.path().join(relative);
        std::fs::create_dir_all(&path).expect("repository dir");
        let repo = Self { _dir: dir, path };
        repo.git(&["init", "-q"]);
        std::fs::copy(
            podman::busybox().expect("busybox"),
            repo.path().join("busybox"),
        )
        .expect("busybox");
        std::fs::create_dir(repo.path().join("www")).expect("www");
        repo
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `file:///…` of the repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=test", "-c", "user.email=test@deployd.test"])
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Commits a page saying `page`, built by `dockerfile`; returns the sha.
    pub fn commit(&self, page: &str, dockerfile: &str) -> String {
        std::fs::write(self.path().join("www/index.html"), format!("{page}\n")).expect("page");
        std::fs::write(self.path().join("Dockerfile"), dockerfile).expect("Dockerfile");
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", page]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// A Dockerfile that serves `www` with busybox httpd; `extra` lines go
/// before the command.
pub fn web_dockerfile(extra: &str) -> String {
    format!(
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         COPY www /www\n\
         {extra}\n\
         CMD [\"/bin/busybox\", \"sh\", \"-c\", \"exec /bin/busybox httpd -f -p $PORT -h /www\"]\n"
    )
}

/// Removes the images the builder left in podman's local storage for
/// `registry` (tests share podman's storage).
pub fn remove_images(registry: &str) {
    let out = Command::new("podman")
        .args(["images", "--format", "{{.ID}} {{.Repository}}"])
        .output();
    let Ok(out) = out else {
        return;
    };
    // By id: images pulled by digest have no tag to name them by.
    let ours: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, repository)| repository.starts_with(registry))
        .map(|(id, _)| id.to_string())
        .collect();
    if !ours.is_empty() {
        let _ = Command::new("podman")
            .args(["rmi", "-f"])
            .args(&ours)
            .output();
    }
}
