//! The podman builder: fetches the exact commit with git, builds its
//! Dockerfile with podman and pushes the image to the configured registry;
//! the deployment then runs the image by digest
//! (`REGISTRY/deployd/PROJECT@sha256:…`). Every program runs as an argv
//! list (`command.rs`), so a repository address or path reaches git and
//! podman byte for byte as one argument.
//!
//! The image is tagged `REGISTRY/deployd/PROJECT:DEPLOYMENT`, a name
//! derived from ids, so a build run again after a crash finds what the
//! first run got to: an image the registry already has under that tag is
//! adopted, an image built here but not pushed is pushed, and only
//! otherwise is the commit built again (at most once more, never twice
//! after a push).

mod command;
mod registry;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{BuildError, BuildOutput, BuildRequest, Builder, Progress};
use command::Run;

pub struct PodmanBuilder {
    /// `HOST:PORT` images are pushed to.
    registry: String,
    /// The registry speaks plain HTTP.
    insecure: bool,
    allow_file: bool,
    podman: PathBuf,
    git: PathBuf,
    /// Checkouts, one per build, named after the deployment.
    work: PathBuf,
}

pub struct PodmanBuilderConfig<'a> {
    pub registry: &'a str,
    pub insecure: bool,
    pub allow_file: bool,
    pub podman: &'a Path,
    pub git: &'a Path,
    pub data_dir: &'a Path,
}

impl PodmanBuilder {
    pub fn new(config: PodmanBuilderConfig<'_>) -> Self {
        Self {
            registry: config.registry.to_string(),
            insecure: config.insecure,
            allow_file: config.allow_file,
            podman: config.podman.to_path_buf(),
            git: config.git.to_path_buf(),
            work: config.data_dir.join("build-work"),
        }
    }

    fn tls_verify(&self) -> &'static OsStr {
        OsStr::new(if self.insecure {
            "--tls-verify=false"
        } else {
            "--tls-verify=true"
        })
    }

    async fn image_exists(&self, reference: &str) -> bool {
        tokio::process::Command::new(&self.podman)
            .args(["image", "exists", reference])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    /// Pushes `reference` and returns the digest the registry stored.
    async fn push(
        &self,
        reference: &str,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<String, BuildError> {
        progress(format!("==> pushing {reference}"));
        let digest_file = dir.join("digest");
        run(
            Run {
                what: "podman push",
                program: &self.podman,
                args: vec![
                    OsStr::new("push"),
                    self.tls_verify(),
                    OsStr::new("--digestfile"),
                    digest_file.as_os_str(),
                    OsStr::new(reference),
                ],
                dir,
            },
            progress,
        )
        .await?;
        let digest = std::fs::read_to_string(&digest_file)
            .map_err(|e| BuildError(format!("podman push wrote no digest: {e}")))?;
        let digest = digest.trim();
        if !registry::is_digest(digest) {
            return Err(BuildError(format!(
                "podman push reported {digest:?}, not a sha256 digest"
            )));
        }
        Ok(digest.to_string())
    }

    /// Fetches the commit into `dir` and builds it as `reference`.
    async fn fetch_and_build<'a>(
        &'a self,
        request: &'a BuildRequest,
        reference: &str,
        dir: &'a Path,
        progress: Progress<'_>,
    ) -> Result<(), BuildError> {
        let source = &request.source;
        if !is_full_sha(&source.commit_sha) {
            return Err(BuildError(format!(
                "commit {} is not a full sha (40 or 64 hex digits): git fetches commits by their full sha",
                source.commit_sha
            )));
        }
        if source.repository.starts_with("file://") && !self.allow_file {
            return Err(BuildError(
                "file:// repositories are not allowed (builder.allow_file_repositories)".into(),
            ));
        }
        progress(format!(
            "==> fetching {} {}",
            source.repository, source.commit_sha
        ));
        let git = |what: &'static str, args: Vec<&'a OsStr>| Run {
            what,
            program: &self.git,
            args,
            dir,
        };
        let init = vec![OsStr::new("init"), OsStr::new("-q")];
        run(git("git init", init), progress).await?;
        let fetch = ["fetch", "-q", "--depth", "1", "--no-tags", "--"].map(OsStr::new);
        let mut args = fetch.to_vec();
        args.push(OsStr::new(&source.repository));
        args.push(OsStr::new(&source.commit_sha));
        run(git("git fetch", args), progress).await?;
        let checkout = [
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "-q",
            "FETCH_HEAD",
        ]
        .map(OsStr::new);
        run(git("git checkout", checkout.to_vec()), progress).await?;

        let dockerfile = if source.dockerfile_path.is_empty() {
            "Dockerfile"
        } else {
            &source.dockerfile_path
        };
        let context = inside(dir, &source.context_path)?;
        let dockerfile = inside(dir, dockerfile)?;
        progress(format!("==> building {reference}"));
        run(
            Run {
                what: "podman build",
                program: &self.podman,
                args: vec![
                    OsStr::new("build"),
                    OsStr::new("--file"),
                    dockerfile.as_os_str(),
                    OsStr::new("--tag"),
                    OsStr::new(reference),
                    context.as_os_str(),
                ],
                dir,
            },
            progress,
        )
        .await
    }
}

#[async_trait]
impl Builder for PodmanBuilder {
    async fn build(
        &self,
        request: &BuildRequest,
        progress: Progress<'_>,
    ) -> Result<BuildOutput, BuildError> {
        let name = format!("deployd/{}", request.project_id);
        let tag = request.deployment_id.to_string();
        let reference = format!("{}/{name}:{tag}", self.registry);
        let output = |digest: String| BuildOutput {
            build_id: format!("bld_{}", request.deployment_id.short()),
            image: format!("{}/{name}@{digest}", self.registry),
        };
        if self.insecure {
            let known = registry::digest(&self.registry, &name, &tag)
                .await
                .map_err(BuildError)?;
            if let Some(digest) = known {
                progress(format!(
                    "==> adopting {reference} ({digest}), pushed before a restart"
                ));
                return Ok(output(digest));
            }
        }
        let dir = self.work.join(&tag);
        fresh_dir(&dir).await?;
        let result = async {
            if self.image_exists(&reference).await {
                progress(format!("==> {reference} was built before a restart"));
            } else {
                self.fetch_and_build(request, &reference, &dir, progress)
                    .await?;
            }
            self.push(&reference, &dir, progress).await
        }
        .await;
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        result.map(output)
    }
}

/// Runs a command with this build's progress.
async fn run(command: Run<'_>, progress: Progress<'_>) -> Result<(), BuildError> {
    command::run(command, progress).await
}

/// An empty directory at `dir` (a checkout left by a crash is removed).
async fn fresh_dir(dir: &Path) -> Result<(), BuildError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&dir)
    })
    .await
    .map_err(|e| BuildError(format!("cannot prepare the checkout: {e}")))?
    .map_err(|e| BuildError(format!("cannot prepare the checkout: {e}")))
}

/// `relative` inside the checkout `dir`, refusing one that resolves
/// outside it: a symlink in the repository must not make podman read the
/// daemon's own files.
fn inside(dir: &Path, relative: &str) -> Result<PathBuf, BuildError> {
    let root = dir
        .canonicalize()
        .map_err(|e| BuildError(format!("checkout missing: {e}")))?;
    let path = root.join(relative);
    let resolved = path.canonicalize().map_err(|e| {
        BuildError(format!(
            "{relative:?} is not in the repository at this commit: {e}"
        ))
    })?;
    if !resolved.starts_with(&root) {
        return Err(BuildError(format!(
            "{relative:?} points outside the repository"
        )));
    }
    Ok(resolved)
}

fn is_full_sha(sha: &str) -> bool {
    matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit())
}
