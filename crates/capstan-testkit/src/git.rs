//! Git repositories built by code, for tests.
//!
//! [`GitRepo`] is a non-bare working repository driven through the system `git` binary with a
//! fixed, hermetic environment: no system or user configuration is read (`HOME` points into a
//! private temporary directory), author and committer are fixed, terminal prompts are disabled,
//! proxies are ignored, and commit and tag dates come from a per-repository logical clock. Two
//! repositories built by the same sequence of calls therefore have the same commit SHAs.
//!
//! Every call runs `git` synchronously through [`std::process`] with a deadline, so the fixture
//! works from sync tests, from async tests and from any thread. Start reading at
//! [`GitRepo::init`]; [`crate::git_http`] serves these repositories over smart HTTP.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use capstan_testkit::git::GitRepo;
//!
//! let repo = GitRepo::init()?;
//! repo.write("app/deployment.yaml", "kind: Deployment\n")?;
//! let first = repo.commit("first")?;
//! repo.tag("v1")?.branch("feature")?.checkout("feature")?;
//! repo.write("app/service.yaml", "kind: Service\n")?;
//! repo.commit("second")?;
//! assert_eq!(repo.rev_parse("v1")?, first);
//! println!("clone me from {}", repo.file_url());
//! # Ok(())
//! # }
//! ```

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use tempfile::TempDir;

/// Name used for both author and committer of every commit and annotated tag.
pub const AUTHOR_NAME: &str = "Capstan Test";
/// E-mail used for both author and committer of every commit and annotated tag.
pub const AUTHOR_EMAIL: &str = "test@capstan.invalid";
/// The default branch of every repository created by [`GitRepo::init`].
pub const DEFAULT_BRANCH: &str = "main";
/// Unix time of the logical clock's first tick (2023-11-14T22:13:20Z); each commit or
/// annotated tag advances the clock by [`CLOCK_STEP_SECS`].
pub const CLOCK_EPOCH: u64 = 1_700_000_000;
/// Seconds the logical clock advances per commit or annotated tag.
pub const CLOCK_STEP_SECS: u64 = 60;
/// How long one `git` invocation may run before it is killed and reported as an error.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Written to `$HOME/.gitconfig` of every fixture: it replaces whatever the machine's user has.
const GLOBAL_CONFIG: &str = "\
[init]
\tdefaultBranch = main
[core]
\tsymlinks = true
\tautocrlf = false
\tfsmonitor = false
[commit]
\tgpgsign = false
[tag]
\tgpgsign = false
[advice]
\tdetachedHead = false
[protocol \"file\"]
\tallow = always
[safe]
\tdirectory = *
";

/// Variables that would make `git` look at another repository, another configuration, a
/// credential prompt or a proxy. They are removed from every fixture command.
const LEAKY_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_CONFIG",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_PROTOCOL",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_PROXY_COMMAND",
    "GIT_SSL_NO_VERIFY",
    "GIT_HTTP_USER_AGENT",
    "GIT_EDITOR",
    "EDITOR",
    "VISUAL",
    "GIT_PAGER",
    "PAGER",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// Distinguishes the fixtures of one test binary; it becomes part of [`GitRepo::name`].
static NEXT_REPO: AtomicU64 = AtomicU64::new(1);

/// A non-bare Git repository built by test code.
///
/// Mutating methods take `&self` and return `&Self`, so calls chain
/// (`repo.write(..)?.write(..)?.commit(..)?`) and a repository can be shared between threads.
/// Concurrent mutations of one repository are the caller's business, as with `git` itself.
///
/// Dropping a repository created by [`GitRepo::init`] or [`GitRepo::clone_from`] deletes it;
/// one created by [`GitRepo::init_at`] stays where it was put (only its private `HOME` goes).
#[derive(Debug)]
pub struct GitRepo {
    /// Holds `home/` and, for repositories we own, the work tree.
    scratch: TempDir,
    work: PathBuf,
    name: String,
    /// Logical clock: the number of commits and annotated tags made through this value.
    tick: AtomicU64,
}

impl GitRepo {
    /// Creates an empty repository in a fresh temporary directory, on branch `main`.
    pub fn init() -> anyhow::Result<Self> {
        let scratch = new_scratch()?;
        let name = next_name();
        let work = scratch.path().join(&name);
        let repo = Self::new(scratch, work, name);
        repo.git_in_home(
            &[OsStr::new("init"), OsStr::new("-q"), OsStr::new("-b")],
            |cmd| {
                cmd.arg(DEFAULT_BRANCH).arg(&repo.work);
            },
        )?;
        Ok(repo)
    }

    /// Creates an empty repository at `path` (which must not exist yet, or be an empty
    /// directory), on branch `main`. The directory is not deleted when the value is dropped,
    /// which suits repositories created inside a server root such as
    /// [`GitHttpServer::root`](crate::git_http::GitHttpServer::root).
    ///
    /// The repository's [name](Self::name) is the directory's file name without a `.git` suffix.
    pub fn init_at(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        if path.exists() {
            let mut entries =
                std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?;
            ensure!(
                entries.next().is_none(),
                "cannot create a git fixture in {}: the directory is not empty",
                path.display()
            );
        }
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let work =
            std::fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
        let name = work
            .file_name()
            .and_then(OsStr::to_str)
            .map(|n| n.strip_suffix(".git").unwrap_or(n).to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(next_name);
        let repo = Self::new(new_scratch()?, work, name);
        repo.git(["init", "-q", "-b", DEFAULT_BRANCH])?;
        Ok(repo)
    }

    /// Clones `url` into a fresh temporary directory with the system `git clone`.
    ///
    /// `config` pairs are passed as `git clone -c key=value`, which also stores them in the
    /// clone's configuration, so later fetches and pushes reuse them (for example
    /// `("http.extraHeader", "Authorization: Bearer ...")`).
    pub fn clone_from(url: &str, config: &[(&str, &str)]) -> anyhow::Result<Self> {
        let scratch = new_scratch()?;
        let name = next_name();
        let work = scratch.path().join(&name);
        let repo = Self::new(scratch, work, name);
        repo.git_in_home(&[OsStr::new("clone"), OsStr::new("-q")], |cmd| {
            for (key, value) in config {
                cmd.arg("-c").arg(format!("{key}={value}"));
            }
            cmd.arg("--").arg(url).arg(&repo.work);
        })?;
        Ok(repo)
    }

    fn new(scratch: TempDir, work: PathBuf, name: String) -> Self {
        Self {
            scratch,
            work,
            name,
            tick: AtomicU64::new(0),
        }
    }

    /// A short name, unique within the test binary for fixtures made by [`GitRepo::init`] and
    /// [`GitRepo::clone_from`]; [`GitHttpServer::url_for`](crate::git_http::GitHttpServer::url_for)
    /// serves the repository as `/<name>.git`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The work tree (absolute, canonical for [`GitRepo::init_at`]).
    pub fn path(&self) -> &Path {
        &self.work
    }

    /// The repository's `.git` directory.
    pub fn git_dir(&self) -> PathBuf {
        self.work.join(".git")
    }

    /// The private `HOME` every `git` command of this fixture runs with.
    pub fn home(&self) -> PathBuf {
        self.scratch.path().join("home")
    }

    /// A `file://` URL that `git clone` and `gix` accept.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.work.display())
    }

    /// Writes `contents` to `path` (relative to the work tree), creating parent directories.
    pub fn write(
        &self,
        path: impl AsRef<Path>,
        contents: impl AsRef<[u8]>,
    ) -> anyhow::Result<&Self> {
        let full = self.inside(path.as_ref())?;
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&full, contents).with_context(|| format!("writing {}", full.display()))?;
        Ok(self)
    }

    /// Writes several files; see [`GitRepo::write`].
    pub fn write_all<P, C>(&self, files: &[(P, C)]) -> anyhow::Result<&Self>
    where
        P: AsRef<Path>,
        C: AsRef<[u8]>,
    {
        for (path, contents) in files {
            self.write(path, contents)?;
        }
        Ok(self)
    }

    /// Removes a file, a symlink (not what it points to) or a whole directory from the work tree.
    pub fn remove(&self, path: impl AsRef<Path>) -> anyhow::Result<&Self> {
        let full = self.inside(path.as_ref())?;
        let meta = std::fs::symlink_metadata(&full)
            .with_context(|| format!("removing {}: it does not exist", full.display()))?;
        let result = if meta.is_dir() {
            std::fs::remove_dir_all(&full)
        } else {
            std::fs::remove_file(&full)
        };
        result.with_context(|| format!("removing {}", full.display()))?;
        Ok(self)
    }

    /// Creates a symbolic link at `path` pointing at `target`, verbatim. The target is not
    /// checked: hostile fixtures use links such as `../../etc/passwd` or `/etc`.
    pub fn symlink(
        &self,
        path: impl AsRef<Path>,
        target: impl AsRef<Path>,
    ) -> anyhow::Result<&Self> {
        let full = self.inside(path.as_ref())?;
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::os::unix::fs::symlink(target.as_ref(), &full)
            .with_context(|| format!("creating symlink {}", full.display()))?;
        Ok(self)
    }

    /// Reads a file of the work tree as UTF-8.
    pub fn read(&self, path: impl AsRef<Path>) -> anyhow::Result<String> {
        let full = self.inside(path.as_ref())?;
        std::fs::read_to_string(&full).with_context(|| format!("reading {}", full.display()))
    }

    /// Stages every change in the work tree (`git add -A`) and commits it; returns the new
    /// commit's SHA. Commits with no changes are allowed, so a test can always move a branch.
    pub fn commit(&self, message: &str) -> anyhow::Result<String> {
        self.git(["add", "-A"])?;
        self.advance_clock();
        self.git([
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ])?;
        self.head()
    }

    /// Creates branch `name` at `HEAD` without switching to it.
    pub fn branch(&self, name: &str) -> anyhow::Result<&Self> {
        self.git(["branch", "--", name])?;
        Ok(self)
    }

    /// Switches the work tree to a branch, tag or commit (`git checkout`); a tag or commit
    /// leaves `HEAD` detached.
    pub fn checkout(&self, rev: &str) -> anyhow::Result<&Self> {
        self.git(["checkout", "-q", rev, "--"])?;
        Ok(self)
    }

    /// Creates the lightweight tag `name` at `HEAD`.
    pub fn tag(&self, name: &str) -> anyhow::Result<&Self> {
        self.git(["tag", "--", name])?;
        Ok(self)
    }

    /// Creates the annotated tag `name` at `HEAD` with `message`.
    pub fn tag_annotated(&self, name: &str, message: &str) -> anyhow::Result<&Self> {
        self.advance_clock();
        self.git(["tag", "-a", "-m", message, "--", name])?;
        Ok(self)
    }

    /// The SHA of the commit `HEAD` points at.
    pub fn head(&self) -> anyhow::Result<String> {
        self.rev_parse("HEAD")
    }

    /// The SHA `rev` names, peeled to a commit when it is a tag (`git rev-parse rev^{commit}`
    /// would say the same); use [`GitRepo::git`] for other object kinds.
    pub fn rev_parse(&self, rev: &str) -> anyhow::Result<String> {
        self.git([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ])
        .with_context(|| format!("{rev} does not name a commit in {}", self.work.display()))
    }

    /// Runs `git <args>` in the work tree with the fixture's environment and returns its
    /// standard output without the trailing newline.
    pub fn git<I, S>(&self, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        run(cmd)
    }

    /// A `git` command with the fixture's hermetic environment, running in the work tree. Use
    /// it for what the fluent API lacks, or convert it with `tokio::process::Command::from`
    /// to run it asynchronously.
    pub fn command(&self) -> Command {
        let mut cmd = hermetic_command(&self.home(), self.date());
        cmd.current_dir(&self.work);
        cmd
    }

    /// Runs `git <prefix> <what add adds>` outside the work tree (which may not exist yet).
    fn git_in_home(
        &self,
        prefix: &[&OsStr],
        add: impl FnOnce(&mut Command),
    ) -> anyhow::Result<String> {
        let mut cmd = hermetic_command(&self.home(), self.date());
        cmd.current_dir(self.scratch.path()).args(prefix);
        add(&mut cmd);
        run(cmd)
    }

    fn advance_clock(&self) {
        self.tick.fetch_add(1, Ordering::SeqCst);
    }

    /// The date of the next commit or tag, in Git's internal format.
    fn date(&self) -> String {
        let tick = self.tick.load(Ordering::SeqCst);
        format!("{} +0000", CLOCK_EPOCH + tick * CLOCK_STEP_SECS)
    }

    /// Resolves a relative path inside the work tree, refusing absolute paths, `..`, and paths
    /// that go through a symlink (which could point out of the repository).
    fn inside(&self, rel: &Path) -> anyhow::Result<PathBuf> {
        ensure!(
            !rel.as_os_str().is_empty(),
            "a fixture path must not be empty"
        );
        let mut full = self.work.clone();
        let mut components = rel.components().peekable();
        while let Some(component) = components.next() {
            match component {
                Component::Normal(part) => {
                    if part == ".git" {
                        bail!("fixture path {} reaches into .git", rel.display());
                    }
                    full.push(part);
                    let is_last = components.peek().is_none();
                    if !is_last && full.is_symlink() {
                        bail!(
                            "fixture path {} goes through the symlink {}",
                            rel.display(),
                            full.display()
                        );
                    }
                }
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => bail!(
                    "fixture path {} must be relative to the work tree and must not contain ..",
                    rel.display()
                ),
            }
        }
        Ok(full)
    }
}

fn next_name() -> String {
    format!("repo{}", NEXT_REPO.fetch_add(1, Ordering::Relaxed))
}

/// A temporary directory holding `home/.gitconfig`.
fn new_scratch() -> anyhow::Result<TempDir> {
    let scratch = tempfile::Builder::new()
        .prefix("capstan-git-")
        .tempdir()
        .context("creating a temporary directory for a git fixture")?;
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).with_context(|| format!("creating {}", home.display()))?;
    std::fs::write(home.join(".gitconfig"), GLOBAL_CONFIG)
        .with_context(|| format!("writing {}/.gitconfig", home.display()))?;
    Ok(scratch)
}

/// `git` with a fixed environment: `home` as `HOME` (and XDG config home), no system config,
/// fixed identity, `date` for author and committer, no prompts, no pager, no proxies, C locale.
fn hermetic_command(home: &Path, date: String) -> Command {
    let mut cmd = Command::new("git");
    for var in LEAKY_ENV {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", AUTHOR_NAME)
        .env("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL)
        .env("GIT_COMMITTER_NAME", AUTHOR_NAME)
        .env("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL)
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat")
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion within [`GIT_TIMEOUT`]; returns trimmed stdout, or an error naming
/// the command, its directory, its exit status and its stderr.
fn run(mut cmd: Command) -> anyhow::Result<String> {
    let described = describe(&cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {described}: is git installed and on PATH?"))?;
    // Drain both pipes on their own threads so a chatty command never blocks on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {described}"))?
        {
            break status;
        }
        if started.elapsed() > GIT_TIMEOUT {
            // Best effort: the process may have exited in the meantime.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{described} did not finish within {GIT_TIMEOUT:?}; stderr: {}",
                join_output(stderr).trim()
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let out = join_output(stdout);
    let err = join_output(stderr);
    if !status.success() {
        let detail = if err.trim().is_empty() {
            out.trim()
        } else {
            err.trim()
        };
        bail!("{described} failed ({status}): {detail}");
    }
    Ok(out.trim_end_matches(['\n', '\r']).to_owned())
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error only truncates diagnostics; the exit status still decides.
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

fn join_output(handle: std::thread::JoinHandle<Vec<u8>>) -> String {
    let bytes = handle.join().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `git clone -q ... (in /tmp/x)` for error messages, with URL passwords masked.
fn describe(cmd: &Command) -> String {
    let mut out = String::from("git");
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&redact_userinfo(&arg.to_string_lossy()));
    }
    if let Some(dir) = cmd.get_current_dir() {
        let _ = write!(out, " (in {})", dir.display());
    }
    out
}

/// `http://user:secret@host/x` becomes `http://user:***@host/x`; anything else is unchanged.
fn redact_userinfo(arg: &str) -> String {
    let Some(scheme_end) = arg.find("://") else {
        return arg.to_owned();
    };
    let rest = &arg[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return arg.to_owned();
    };
    let user = authority[..at].split(':').next().unwrap_or_default();
    format!("{}://{user}:***{}", &arg[..scheme_end], &rest[at..])
}
