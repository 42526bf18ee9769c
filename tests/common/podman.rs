//! Podman for tests: whether it can run containers here, tiny images
//! built `FROM scratch` with a static busybox, and cleanup. Tests that need
//! it skip with a printed reason when it is missing, unless
//! `DEPLOYD_REQUIRE_PODMAN` is set (CI sets it), in which case they fail.

use std::path::Path;
use std::process::Command;

/// The variable that turns a skip into a failure.
pub const REQUIRE: &str = "DEPLOYD_REQUIRE_PODMAN";

/// `true` when podman can run containers; otherwise prints why the test is
/// skipped (or panics when podman is required).
pub fn available(test: &str) -> bool {
    let reason = match Command::new("podman").arg("info").output() {
        Ok(out) if out.status.success() => match busybox() {
            Some(_) => return true,
            None => "no static busybox (/bin/busybox from busybox-static)".to_string(),
        },
        Ok(out) => format!(
            "`podman info` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("podman is not installed ({e})"),
    };
    if std::env::var_os(REQUIRE).is_some() {
        panic!("{test}: {REQUIRE} is set but {reason}");
    }
    eprintln!("skipping {test}: {reason}");
    false
}

pub fn busybox() -> Option<&'static str> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// Builds `localhost/deployd-test-web:{tag}`: busybox httpd on `$PORT`
/// serving an index page that says `tag`, and `/cgi-bin/slow`, which
/// answers `slow {tag}` after two seconds. Returns the image reference.
pub fn build_image(tag: &str) -> String {
    let image = format!("localhost/deployd-test-web:{tag}");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("www")).expect("www");
    std::fs::write(dir.path().join("www/index.html"), format!("{tag}\n")).expect("index");
    std::fs::create_dir(dir.path().join("www/cgi-bin")).expect("cgi-bin");
    let slow = dir.path().join("www/cgi-bin/slow");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/busybox sh\n/bin/busybox sleep 2\necho 'Content-Type: text/plain'\necho\necho 'slow {tag}'\n"
        ),
    )
    .expect("slow");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::copy(busybox().expect("busybox"), dir.path().join("busybox")).expect("busybox");
    std::fs::write(
        dir.path().join("Containerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         COPY www /www\n\
         CMD [\"/bin/busybox\", \"sh\", \"-c\", \"exec /bin/busybox httpd -f -p $PORT -h /www\"]\n",
    )
    .expect("Containerfile");
    let out = Command::new("podman")
        .args(["build", "-q", "-t", &image])
        .arg(dir.path())
        .output()
        .expect("podman build");
    assert!(
        out.status.success(),
        "podman build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

/// Names and states of the containers labelled with this deployment.
pub fn containers(deployment: &str) -> Vec<(String, String)> {
    let out = Command::new("podman")
        .args(["ps", "-a", "--format", "json", "--filter"])
        .arg(format!("label=deployd.deployment={deployment}"))
        .output()
        .expect("podman ps");
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("podman ps json");
    listed
        .iter()
        .map(|c| {
            (
                c["Names"][0].as_str().unwrap_or_default().to_string(),
                c["State"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Removes every container of a project (tests share podman's storage).
pub fn remove_project(project: &str) {
    let out = Command::new("podman")
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label=deployd.project={project}"))
        .output()
        .expect("podman ps");
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0"])
            .args(&ids)
            .output();
    }
}
