//! The container image, checked without a Docker engine. `Dockerfile` is parsed (stages, `RUN`,
//! `COPY`, `ENV`, `USER`, `VOLUME`, `EXPOSE`, `ENTRYPOINT`, `CMD`) and what it promises is held
//! against the real binary: the shared libraries `ldd` finds in it, a run of `troupe serve` with
//! the image's command and nothing but the image's environment, the build context `.dockerignore`
//! leaves, and the Deployment in `deploy/` that runs the image.
//!
//! What a base image ships is written down here ([`base_image`]): a test without an engine cannot
//! look inside one. Each check returns the problems it finds instead of asserting, so
//! `the_checks_catch_an_image_that_lost_its_user_certificates_libraries_or_binary` can show every
//! one of them failing on a broken copy of the Dockerfile.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Repo, TROUPE, scheduler_yaml, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use troupe::domain::room::{Room, RoomStatus};
use troupe::http::api::SchedulerSummary;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const T: Duration = Duration::from_secs(60);

// ---- the Dockerfile ---------------------------------------------------------------------------

/// One instruction, its continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    /// Upper case: `RUN`, `COPY`, ...
    keyword: String,
    args: String,
    line: usize,
}

#[derive(Debug, Clone)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

#[derive(Debug, Clone)]
struct Dockerfile {
    stages: Vec<Stage>,
}

/// A `COPY`, its destination made absolute with the `WORKDIR` of that point.
#[derive(Debug, Clone)]
struct CopyStep {
    from: Option<String>,
    sources: Vec<String>,
    /// Absolute, normalized.
    dest: String,
    /// The destination is a directory: it ends with `/` or there are several sources.
    into_dir: bool,
    line: usize,
}

impl CopyStep {
    /// Where `source` lands.
    fn target_of(&self, source: &str) -> String {
        if self.into_dir {
            join(&self.dest, basename(source))
        } else {
            self.dest.clone()
        }
    }
}

fn dockerfile_text() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("Dockerfile"))
        .expect("a Dockerfile at the top of the repository")
}

impl Dockerfile {
    fn read() -> Self {
        Self::parse(&dockerfile_text())
    }

    /// Comments (and parser directives, which look like comments) and blank lines are dropped,
    /// a line ending in `\` continues on the next.
    fn parse(text: &str) -> Self {
        let mut stages: Vec<Stage> = vec![];
        let mut pending: Option<(usize, String)> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
            if let Some(body) = line.strip_suffix('\\') {
                joined.push_str(body);
                joined.push(' ');
                pending = Some((start, joined));
                continue;
            }
            joined.push_str(line);
            let (keyword, args) = joined
                .split_once(char::is_whitespace)
                .unwrap_or((joined.as_str(), ""));
            let keyword = keyword.to_ascii_uppercase();
            let args = args.trim().to_string();
            if keyword == "FROM" {
                let words: Vec<&str> = args
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let name = (words.len() == 3 && words[1].eq_ignore_ascii_case("as"))
                    .then(|| words[2].to_string());
                stages.push(Stage {
                    image: words.first().unwrap_or(&"").to_string(),
                    name,
                    instructions: vec![],
                });
            } else {
                stages
                    .last_mut()
                    .unwrap_or_else(|| panic!("Dockerfile:{start}: {keyword} before any FROM"))
                    .instructions
                    .push(Instruction {
                        keyword,
                        args,
                        line: start,
                    });
            }
        }
        assert!(pending.is_none(), "the Dockerfile ends in a continuation");
        Self { stages }
    }

    fn final_stage(&self) -> &Stage {
        self.stages.last().expect("the Dockerfile has a FROM")
    }

    /// A stage by its `AS` name or its index, as `COPY --from` names it.
    fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(name))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
    }
}

impl Stage {
    fn all<'a>(&'a self, keyword: &str) -> impl Iterator<Item = &'a Instruction> + use<'a> {
        let keyword = keyword.to_string();
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }

    fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.all(keyword).last()
    }

    fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("stage {name} (FROM {})", self.image),
            None => format!("the final stage (FROM {})", self.image),
        }
    }

    /// `ENV` of this stage over the base image's, as the container sees it.
    fn environment(&self) -> Result<BTreeMap<String, String>, String> {
        let base = base_image(&self.image)?;
        let mut env: BTreeMap<String, String> = base
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for i in self.all("ENV") {
            let words = shell_words(&i.args);
            if words.first().is_some_and(|w| w.contains('=')) {
                for w in words {
                    let (k, v) = w.split_once('=').unwrap_or((&w, ""));
                    env.insert(k.to_string(), v.to_string());
                }
            } else if let Some((k, v)) = i.args.split_once(char::is_whitespace) {
                env.insert(k.to_string(), v.trim().to_string());
            }
        }
        Ok(env)
    }

    /// The working directory after the last `WORKDIR`.
    fn workdir(&self) -> String {
        self.all("WORKDIR")
            .fold("/".to_string(), |dir, i| join(&dir, i.args.trim()))
    }

    fn copies(&self) -> Vec<CopyStep> {
        let mut dir = "/".to_string();
        let mut out = vec![];
        for i in &self.instructions {
            match i.keyword.as_str() {
                "WORKDIR" => dir = join(&dir, i.args.trim()),
                "COPY" | "ADD" => {
                    let mut from = None;
                    let mut rest = i.args.trim();
                    while rest.starts_with("--") {
                        let (flag, after) =
                            rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                        if let Some(stage) = flag.strip_prefix("--from=") {
                            from = Some(stage.to_string());
                        }
                        rest = after.trim_start();
                    }
                    let mut paths = json_array(rest).unwrap_or_else(|| shell_words(rest));
                    let Some(dest) = paths.pop() else { continue };
                    out.push(CopyStep {
                        from,
                        into_dir: dest.ends_with('/') || paths.len() > 1,
                        dest: join(&dir, &dest),
                        sources: paths,
                        line: i.line,
                    });
                }
                _ => {}
            }
        }
        out
    }

    /// Every simple command of every `RUN` (words, with leading `VAR=value` and `RUN --flag`s
    /// dropped), split at `&&`, `||`, `;` and `|`.
    fn commands(&self) -> Vec<Vec<String>> {
        let mut out = vec![];
        for i in self.all("RUN") {
            let mut command: Vec<String> = vec![];
            let mut first = true;
            for word in shell_words(&i.args) {
                if ["&&", "||", ";", "|"].contains(&word.as_str()) {
                    out.push(std::mem::take(&mut command));
                    first = false;
                    continue;
                }
                let skip = command.is_empty()
                    && ((first && word.starts_with("--")) || is_assignment(&word));
                if !skip {
                    command.push(word);
                }
            }
            out.push(command);
        }
        out.retain(|c| !c.is_empty());
        out
    }

    /// Packages `apt-get install` (or `apt install`) installs in this stage.
    fn installed(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for c in self.commands() {
            if matches!(c[0].as_str(), "apt-get" | "apt")
                && let Some(at) = c.iter().position(|w| w == "install")
            {
                out.extend(c[at + 1..].iter().filter(|w| !w.starts_with('-')).cloned());
            }
        }
        out
    }

    /// Debian packages the stage has: its base image's and what it installs.
    fn packages(&self) -> Result<BTreeSet<String>, String> {
        let base = base_image(&self.image)?;
        let mut out: BTreeSet<String> = base.packages.iter().map(|p| p.to_string()).collect();
        out.extend(self.installed());
        Ok(out)
    }

    /// Directories the stage makes `uid`'s: `useradd --uid UID --home-dir D --create-home`,
    /// `chown UID[:GID] D...`, and what the base image has.
    fn owned_by(&self, uid: u32) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = base_image(&self.image)
            .map(|b| {
                b.homes
                    .iter()
                    .filter(|(u, _)| *u == uid)
                    .map(|(_, d)| d.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut names: BTreeSet<String> = BTreeSet::new();
        for c in self.commands() {
            match c[0].as_str() {
                "useradd" => {
                    let value = |long: &str, short: &str| {
                        c.iter().enumerate().find_map(|(i, w)| {
                            if w == long || w == short {
                                c.get(i + 1).cloned()
                            } else {
                                w.strip_prefix(&format!("{long}=")).map(str::to_string)
                            }
                        })
                    };
                    let create = c.iter().any(|w| w == "--create-home" || w == "-m");
                    if value("--uid", "-u").and_then(|u| u.parse::<u32>().ok()) == Some(uid) {
                        names.extend(c.last().cloned());
                        if let (true, Some(home)) = (create, value("--home-dir", "-d")) {
                            out.insert(join("/", &home));
                        }
                    }
                }
                "chown" => {
                    let mut args = c[1..].iter().filter(|w| !w.starts_with('-'));
                    let owner = args
                        .next()
                        .map(|o| o.split(':').next().unwrap_or("").to_string());
                    let ours = owner.is_some_and(|o| o == uid.to_string() || names.contains(&o));
                    if ours {
                        out.extend(args.map(|d| join("/", d)));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// `ENTRYPOINT` or `CMD` in exec (JSON) form.
    fn exec_form(&self, keyword: &str) -> Result<Vec<String>, String> {
        let i = self
            .last(keyword)
            .ok_or_else(|| format!("{} has no {keyword}", self.label()))?;
        json_array(&i.args).ok_or_else(|| {
            format!(
                "Dockerfile:{}: {keyword} {} is in shell form: use the exec form [\"...\"] (a \
                 shell-form ENTRYPOINT makes /bin/sh PID 1, and SIGTERM never reaches troupe)",
                i.line, i.args
            )
        })
    }

    fn volumes(&self) -> Vec<String> {
        self.all("VOLUME")
            .flat_map(|i| json_array(&i.args).unwrap_or_else(|| shell_words(&i.args)))
            .map(|v| join("/", &v))
            .collect()
    }

    fn exposed(&self) -> Vec<u16> {
        self.all("EXPOSE")
            .flat_map(|i| shell_words(&i.args))
            .filter_map(|p| p.split('/').next().and_then(|p| p.parse().ok()))
            .collect()
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// Words as a shell splits them: quotes and backslashes honoured, `&&`, `||`, `;` and `|` words
/// of their own.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = vec![];
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    let end = |word: &mut String, in_word: &mut bool, words: &mut Vec<String>| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            ';' => {
                end(&mut word, &mut in_word, &mut words);
                words.push(";".into());
            }
            '&' | '|' => {
                end(&mut word, &mut in_word, &mut words);
                if chars.peek() == Some(&c) {
                    chars.next();
                    words.push(format!("{c}{c}"));
                } else {
                    words.push(c.to_string());
                }
            }
            c if c.is_whitespace() => end(&mut word, &mut in_word, &mut words),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end(&mut word, &mut in_word, &mut words);
    words
}

fn json_array(text: &str) -> Option<Vec<String>> {
    text.trim_start()
        .starts_with('[')
        .then(|| serde_json::from_str(text.trim()).ok())
        .flatten()
}

/// `path` (absolute, or relative to `dir`) with `.`, `..` and repeated slashes resolved.
fn join(dir: &str, path: &str) -> String {
    let full = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{dir}/{path}")
    };
    let mut parts: Vec<&str> = vec![];
    for part in full.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn basename(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

// ---- what base images and Debian packages hold ------------------------------------------------

const DEBIAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a base image ships, of what these checks ask about.
struct BaseImage {
    /// Debian packages.
    packages: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// Home directories of users the image has.
    homes: &'static [(u32, &'static str)],
    /// The Debian release.
    codename: &'static str,
}

/// The images this file knows. Another base image needs an entry first: what it ships decides
/// whether the binary can start in it.
fn base_image(image: &str) -> Result<BaseImage, String> {
    let image = image.strip_prefix("docker.io/library/").unwrap_or(image);
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    match (repo, tag) {
        // The essential packages and apt: libc6, zlib1g (dpkg pre-depends on it) and libgcc-s1
        // (apt depends on it); no OpenSSL, no CA certificates.
        ("debian", "bookworm-slim" | "12-slim") => Ok(BaseImage {
            packages: &["libc6", "libgcc-s1", "zlib1g"],
            env: &[("PATH", DEBIAN_PATH)],
            homes: &[],
            codename: "bookworm",
        }),
        // buildpack-deps:bookworm and the toolchain.
        ("rust", tag) if tag.ends_with("-bookworm") => Ok(BaseImage {
            packages: &[
                "libc6",
                "libgcc-s1",
                "zlib1g",
                "zlib1g-dev",
                "libssl3",
                "libssl-dev",
                "ca-certificates",
                "pkg-config",
            ],
            env: &[(
                "PATH",
                "/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )],
            homes: &[],
            codename: "bookworm",
        }),
        // The alternative the Dockerfile's comment weighs: glibc, OpenSSL, libgcc and CA
        // certificates, but no zlib.
        ("gcr.io/distroless/cc-debian12", _) => Ok(BaseImage {
            packages: &[
                "libc6",
                "libssl3",
                "libgcc-s1",
                "libstdc++6",
                "libgomp1",
                "ca-certificates",
            ],
            env: &[
                ("PATH", DEBIAN_PATH),
                ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
            ],
            homes: &[(65532, "/home/nonroot")],
            codename: "bookworm",
        }),
        _ => Err(format!(
            "FROM {image}: this test does not know what that image ships; add it to base_image()"
        )),
    }
}

/// The Debian package each shared library `troupe` links comes from.
const LIBRARY_PACKAGES: &[(&str, &str)] = &[
    ("libc.so.6", "libc6"),
    ("libm.so.6", "libc6"),
    ("libdl.so.2", "libc6"),
    ("libpthread.so.0", "libc6"),
    ("librt.so.1", "libc6"),
    ("ld-linux-x86-64.so.2", "libc6"),
    ("ld-linux-aarch64.so.1", "libc6"),
    ("libgcc_s.so.1", "libgcc-s1"),
    ("libssl.so.3", "libssl3"),
    ("libcrypto.so.3", "libssl3"),
    ("libz.so.1", "zlib1g"),
];

/// The Debian package a file of an image belongs to, for the files the final stage may take from
/// another stage: the CA bundle (which ca-certificates builds) and the libraries above, in a
/// library directory.
fn debian_package_of(path: &str) -> Option<&'static str> {
    if path == "/etc/ssl/certs/ca-certificates.crt" {
        return Some("ca-certificates");
    }
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let in_lib_dir = ["/lib", "/usr/lib", "/lib64"].contains(&dir)
        || ["/lib/", "/usr/lib/"].iter().any(|p| {
            dir.strip_prefix(p)
                .is_some_and(|t| !t.contains('/') && t.ends_with("-linux-gnu"))
        });
    let name = basename(path);
    in_lib_dir
        .then(|| {
            LIBRARY_PACKAGES
                .iter()
                .find(|(lib, _)| *lib == name)
                .map(|(_, p)| *p)
        })
        .flatten()
}

/// Shared libraries the binary loads, by file name, as `ldd` lists them (the kernel's vDSO left
/// out). The test binary's `troupe` is a debug build of the same crates, with the same system
/// libraries, as the release build of the build stage.
fn linked_libraries(binary: &Path) -> Vec<String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .expect("ldd runs (Debian: libc-bin)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd {}: {text}", binary.display());
    let mut libs = vec![];
    for line in text.lines() {
        assert!(!line.contains("not found"), "ldd: {line}");
        let Some(first) = line.split_whitespace().next() else {
            continue;
        };
        let name = basename(first);
        if !name.starts_with("linux-vdso") && !name.starts_with("linux-gate") {
            libs.push(name.to_string());
        }
    }
    libs
}

// ---- the checks -------------------------------------------------------------------------------

/// The final stage's user: numeric (Kubernetes' runAsNonRoot can only check a number) and not 0.
fn user_of(df: &Dockerfile) -> Result<u32, String> {
    let image = df.final_stage();
    let user = image
        .last("USER")
        .ok_or_else(|| format!("{} has no USER: it would run as root", image.label()))?;
    let (uid, gid) = user.args.split_once(':').unwrap_or((&user.args, "0"));
    let (Ok(uid), Ok(_)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
        return Err(format!(
            "Dockerfile:{}: USER {} is not numeric: runAsNonRoot cannot check a name",
            user.line, user.args
        ));
    };
    if uid == 0 {
        return Err(format!(
            "Dockerfile:{}: USER {}: runs as root",
            user.line, user.args
        ));
    }
    Ok(uid)
}

fn user_problems(df: &Dockerfile) -> Vec<String> {
    user_of(df).err().into_iter().collect()
}

/// The build stage builds `cargo build --release --locked --bin troupe`; the final stage takes
/// from it that binary and files of Debian packages it has, nothing else; the `ENTRYPOINT` is the
/// binary where it was copied to.
fn binary_problems(df: &Dockerfile) -> Vec<String> {
    let mut problems = vec![];
    let image = df.final_stage();
    let mut binary_at = vec![];
    for copy in image.copies() {
        let Some(from) = &copy.from else { continue };
        let Some(stage) = df.stage(from) else {
            problems.push(format!(
                "Dockerfile:{}: COPY --from={from} takes files from an image this file does not build",
                copy.line
            ));
            continue;
        };
        let release = release_binary(stage);
        if let Err(e) = &release {
            problems.push(e.clone());
        }
        let packages = stage.packages().unwrap_or_default();
        for source in &copy.sources {
            let source_abs = join(&stage.workdir(), source);
            if release.as_ref().is_ok_and(|r| *r == source_abs) {
                binary_at.push(copy.target_of(source));
            } else if debian_package_of(&source_abs).is_some_and(|p| packages.contains(p)) {
                // A file of a Debian package that stage has.
            } else {
                problems.push(format!(
                    "Dockerfile:{}: COPY --from={from} {source}: neither the release binary {} \
                     nor a file of a Debian package {} has",
                    copy.line,
                    release.as_deref().unwrap_or("?"),
                    stage.label()
                ));
            }
        }
    }
    if binary_at.len() != 1 {
        problems.push(format!(
            "the final stage should copy the release binary exactly once, copies it to {binary_at:?}"
        ));
        return problems;
    }
    let binary = &binary_at[0];
    let entrypoint = match image.exec_form("ENTRYPOINT") {
        Ok(e) => e,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };
    if entrypoint.len() != 1 {
        problems.push(format!(
            "ENTRYPOINT {entrypoint:?}: only the binary, so that CMD starts with the subcommand"
        ));
    }
    let program = entrypoint.first().cloned().unwrap_or_default();
    let path = image
        .environment()
        .ok()
        .and_then(|e| e.get("PATH").cloned())
        .unwrap_or_default();
    let resolved = if program.contains('/') {
        Some(join("/", &program))
    } else {
        path.split(':')
            .map(|dir| join(dir, &program))
            .find(|candidate| candidate == binary)
    };
    if resolved.as_ref() != Some(binary) {
        problems.push(format!(
            "ENTRYPOINT {program:?} is not the binary copied to {binary} (PATH {path})"
        ));
    }
    problems
}

/// Where `stage` leaves the release binary: `WORKDIR/target/release/troupe` (or under its
/// `CARGO_TARGET_DIR`), once it has run `cargo build --release --locked --bin troupe`.
fn release_binary(stage: &Stage) -> Result<String, String> {
    let builds = stage.commands().into_iter().any(|c| {
        let has = |w: &str| c.iter().any(|x| x == w);
        c[0] == "cargo"
            && c.get(1).is_some_and(|w| w == "build")
            && has("--release")
            && has("--locked")
            && (has("--bin=troupe") || c.windows(2).any(|w| w[0] == "--bin" && w[1] == "troupe"))
    });
    if !builds {
        return Err(format!(
            "{} never runs `cargo build --release --locked --bin troupe`",
            stage.label()
        ));
    }
    let workdir = stage.workdir();
    let target = stage
        .environment()
        .ok()
        .and_then(|e| e.get("CARGO_TARGET_DIR").cloned())
        .map(|t| join(&workdir, &t))
        .unwrap_or_else(|| join(&workdir, "target"));
    Ok(join(&target, "release/troupe"))
}

/// Every shared library `troupe` loads comes from a package the final stage ships, installs, or
/// takes from another stage.
fn library_problems(df: &Dockerfile, libraries: &[String]) -> Vec<String> {
    let image = df.final_stage();
    let provided = match provided_packages(df) {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    let mut problems = vec![];
    for lib in libraries {
        match LIBRARY_PACKAGES.iter().find(|(l, _)| l == lib) {
            None => problems.push(format!(
                "troupe links {lib}, which this test does not know: find its package \
                 (dpkg -S {lib}), install it in the final stage and add it to LIBRARY_PACKAGES"
            )),
            Some((_, package)) if !provided.contains(*package) => problems.push(format!(
                "troupe links {lib} (package {package}), which {} neither ships nor installs",
                image.label()
            )),
            Some(_) => {}
        }
    }
    problems
}

/// Packages the final stage has: its base image's, the ones it installs, and those of files it
/// takes from other stages.
fn provided_packages(df: &Dockerfile) -> Result<BTreeSet<String>, String> {
    let image = df.final_stage();
    let mut provided = image.packages()?;
    for copy in image.copies() {
        let Some(stage) = copy.from.as_deref().and_then(|f| df.stage(f)) else {
            continue;
        };
        let theirs = stage.packages().unwrap_or_default();
        for source in &copy.sources {
            if let Some(p) = debian_package_of(&join(&stage.workdir(), source))
                && theirs.contains(p)
            {
                provided.insert(p.to_string());
            }
        }
    }
    Ok(provided)
}

/// HTTPS remotes need CA certificates where `SSL_CERT_FILE` says; SSH remotes need `HOME`
/// (libgit2 reads `$HOME/.ssh/known_hosts` and takes `$HOME` from the environment only), a
/// directory of the image's user; the state directory the command names is a volume of that
/// user's; and the command listens on the port the image exposes, on every address.
fn environment_problems(df: &Dockerfile) -> Vec<String> {
    let image = df.final_stage();
    let mut problems = vec![];
    let env = match image.environment() {
        Ok(e) => e,
        Err(e) => return vec![e],
    };
    for (k, v) in &env {
        if v.contains('$') {
            problems.push(format!(
                "ENV {k}={v}: write it out, this test does not expand variables"
            ));
        }
    }
    match env.get("SSL_CERT_FILE") {
        None => problems.push(
            "SSL_CERT_FILE is not set: say where OpenSSL finds the CA certificates".to_string(),
        ),
        Some(file) => {
            let package = debian_package_of(file);
            let provided = provided_packages(df).unwrap_or_default();
            if !package.is_some_and(|p| provided.contains(p)) {
                problems.push(format!(
                    "SSL_CERT_FILE={file}: no CA certificates there ({} does not have the \
                     ca-certificates package that builds that bundle)",
                    image.label()
                ));
            }
        }
    }
    if !env.contains_key("PATH") {
        problems.push("PATH is not set".to_string());
    }
    let Ok(uid) = user_of(df) else {
        return problems;
    };
    let owned = image.owned_by(uid);
    match env.get("HOME") {
        None => problems.push(
            "HOME is not set: libgit2 would find no ~/.ssh/known_hosts and refuse every SSH host"
                .to_string(),
        ),
        Some(home) if !owned.contains(&join("/", home)) => problems.push(format!(
            "HOME={home} is not a directory the image makes user {uid}'s (owned: {owned:?})"
        )),
        Some(_) => {}
    }
    let Ok(cmd) = image.exec_form("CMD") else {
        return problems;
    };
    let flag = |name: &str| {
        cmd.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
    };
    match flag("state-dir") {
        None => problems.push(format!("CMD {cmd:?} names no --state-dir=DIR")),
        Some(dir) => {
            let dir = join("/", &dir);
            if !image.volumes().contains(&dir) {
                problems.push(format!(
                    "the state directory {dir} is not a VOLUME (volumes: {:?})",
                    image.volumes()
                ));
            }
            if !owned.contains(&dir) {
                problems.push(format!(
                    "the state directory {dir} is not user {uid}'s (owned: {owned:?})"
                ));
            }
        }
    }
    match flag("listen").map(|l| l.parse::<SocketAddr>()) {
        Some(Ok(addr)) => {
            if !addr.ip().is_unspecified() {
                problems.push(format!(
                    "CMD listens on {addr}: unreachable from outside the container"
                ));
            }
            if !image.exposed().contains(&addr.port()) {
                problems.push(format!(
                    "CMD listens on port {}, the image EXPOSEs {:?}",
                    addr.port(),
                    image.exposed()
                ));
            }
        }
        _ => problems.push(format!(
            "CMD {cmd:?} names no --listen=ADDR:PORT (the default, 127.0.0.1, is unreachable \
             from outside the container)"
        )),
    }
    if cmd.first().map(String::as_str) != Some("serve") {
        problems.push(format!("CMD {cmd:?} does not start with serve"));
    }
    problems
}

/// The build stage is the official Rust image at a full version, no older than Cargo.toml's
/// rust-version, on the final stage's Debian release (the binary needs that release's libraries).
fn toolchain_problems(df: &Dockerfile) -> Vec<String> {
    let image = df.final_stage();
    let Some(build) = df.stages.iter().find(|s| release_binary(s).is_ok()) else {
        return vec!["no stage runs `cargo build --release --locked --bin troupe`".to_string()];
    };
    let mut problems = vec![];
    let reference = build
        .image
        .strip_prefix("docker.io/library/")
        .unwrap_or(&build.image);
    let Some(tag) = reference.strip_prefix("rust:") else {
        return vec![format!("{}: not the official Rust image", build.label())];
    };
    let (version, variant) = tag.split_once('-').unwrap_or((tag, ""));
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    if parts.len() != 3 || version.split('.').count() != 3 {
        problems.push(format!(
            "FROM {}: pin the toolchain to a full version tag (1.x.y)",
            build.image
        ));
    }
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let minimum: Vec<u32> = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("Cargo.toml has a rust-version")
        .trim_matches('"')
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    if parts < minimum {
        problems.push(format!(
            "FROM {}: older than Cargo.toml's rust-version {minimum:?}",
            build.image
        ));
    }
    match (base_image(&build.image), base_image(&image.image)) {
        (Ok(b), Ok(f)) if b.codename == f.codename && variant == b.codename => {}
        (Ok(b), Ok(f)) => problems.push(format!(
            "the build stage is Debian {} (tag {tag}), the final stage Debian {}: build on the \
             release the binary runs on",
            b.codename, f.codename
        )),
        (b, f) => problems.extend(b.err().into_iter().chain(f.err())),
    }
    problems
}

fn all_problems(df: &Dockerfile, libraries: &[String]) -> Vec<String> {
    let mut problems = user_problems(df);
    problems.extend(binary_problems(df));
    problems.extend(library_problems(df, libraries));
    problems.extend(environment_problems(df));
    problems.extend(toolchain_problems(df));
    problems
}

fn assert_none(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

// ---- the static tests -------------------------------------------------------------------------

#[test]
fn the_image_runs_as_a_numeric_non_root_user() {
    assert_none("USER", user_problems(&Dockerfile::read()));
}

#[test]
fn the_image_takes_only_the_release_binary_from_the_build_stage_and_runs_it() {
    assert_none("the binary", binary_problems(&Dockerfile::read()));
}

#[test]
fn the_image_has_every_shared_library_troupe_links() {
    let libraries = linked_libraries(Path::new(TROUPE));
    // The system libraries git2 links for HTTPS and SSH remotes: if these vanish from ldd's
    // list, something else links them (statically?) and this test no longer looks at them.
    for lib in ["libssl.so.3", "libcrypto.so.3", "libz.so.1"] {
        assert!(
            libraries.iter().any(|l| l == lib),
            "{lib} not in {libraries:?}"
        );
    }
    assert_none(
        "shared libraries",
        library_problems(&Dockerfile::read(), &libraries),
    );
}

#[test]
fn the_image_has_ca_certificates_a_home_and_a_state_volume_of_its_user() {
    assert_none("environment", environment_problems(&Dockerfile::read()));
}

#[test]
fn the_build_stage_is_the_official_rust_image_on_the_final_stages_debian_release() {
    assert_none("toolchain", toolchain_problems(&Dockerfile::read()));
}

/// Each way of breaking the image these checks exist for makes one of them fail, with a message
/// that says what broke.
#[test]
fn the_checks_catch_an_image_that_lost_its_user_certificates_libraries_or_binary() {
    let text = dockerfile_text();
    let libraries = linked_libraries(Path::new(TROUPE));
    assert_none(
        "the Dockerfile as it is",
        all_problems(&Dockerfile::parse(&text), &libraries),
    );

    let without_lines = |prefix: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with(prefix))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let final_from = Dockerfile::parse(&text).final_stage().image.clone();
    let final_stage_at = text.find(&format!("FROM {final_from}")).unwrap();
    let distroless = format!(
        "{}FROM gcr.io/distroless/cc-debian12:nonroot\n\
         COPY --from=build /build/target/release/troupe /usr/local/bin/troupe\n\
         ENV HOME=/home/nonroot\nUSER 65532:65532\nVOLUME [\"/home/nonroot/state\"]\n\
         EXPOSE 8080\nENTRYPOINT [\"troupe\"]\n\
         CMD [\"serve\", \"/repo/fleets\", \"--state-dir=/home/nonroot/state\", \"--listen=0.0.0.0:8080\"]\n",
        &text[..final_stage_at]
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("no USER", without_lines("USER "), "has no USER"),
        (
            "USER root",
            text.replace("USER 65532:65532", "USER 0"),
            "runs as root",
        ),
        (
            "USER by name",
            text.replace("USER 65532:65532", "USER troupe"),
            "not numeric",
        ),
        (
            "no ca-certificates",
            text.replace("ca-certificates libssl3", "libssl3"),
            "no CA certificates there",
        ),
        (
            "no SSL_CERT_FILE",
            text.replace(
                " \\\n    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                "",
            ),
            "SSL_CERT_FILE is not set",
        ),
        (
            "no libssl3",
            text.replace("ca-certificates libssl3", "ca-certificates"),
            "libssl.so.3 (package libssl3)",
        ),
        (
            "distroless cc-debian12, which has no zlib",
            distroless,
            "libz.so.1 (package zlib1g)",
        ),
        (
            "the debug binary",
            text.replace(
                "/build/target/release/troupe /usr",
                "/build/target/debug/troupe /usr",
            ),
            "neither the release binary",
        ),
        (
            "a build without --release",
            text.replace("cargo build --release --locked", "cargo build --locked"),
            "never runs `cargo build --release",
        ),
        (
            "the binary off PATH",
            text.replace(
                "release/troupe /usr/local/bin/troupe",
                "release/troupe /opt/troupe/troupe",
            ),
            "ENTRYPOINT \"troupe\" is not the binary",
        ),
        (
            "a shell-form ENTRYPOINT",
            text.replace("ENTRYPOINT [\"troupe\"]", "ENTRYPOINT troupe"),
            "shell form",
        ),
        (
            "no HOME",
            text.replace("    HOME=/home/troupe \\\n", ""),
            "HOME is not set",
        ),
        (
            "no state volume",
            without_lines("VOLUME "),
            "is not a VOLUME",
        ),
        (
            "an unknown base image",
            text.replace(
                &format!("FROM {final_from}"),
                "FROM docker.io/library/ubuntu:24.04",
            ),
            "does not know what that image ships",
        ),
        (
            "a toolchain without a version",
            text.replace("rust:1.95.0-bookworm", "rust:bookworm"),
            "full version tag",
        ),
    ];
    for (what, broken, expected) in cases {
        assert_ne!(
            broken, text,
            "{what}: the Dockerfile changed, update this case"
        );
        let problems = all_problems(&Dockerfile::parse(&broken), &libraries);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{what}: expected a problem saying {expected:?}, found:\n  {}",
            problems.join("\n  ")
        );
    }
}

// ---- running the image's command --------------------------------------------------------------

/// `troupe serve` started with the image's environment only; killed with its rooms when dropped.
struct ImageServer {
    child: Child,
    url: String,
    log: PathBuf,
}

impl ImageServer {
    fn start(args: &[String], env: &BTreeMap<String, String>, log: &Path) -> Self {
        let mut child = Command::new(TROUPE)
            .args(args)
            .env_clear()
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("troupe serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split(" on http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("troupe {args:?} did not start: {line:?}\n{log}");
        };
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("{}{path}", self.url)).await {
            Ok(resp) => (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string()),
        }
    }

    /// Room processes of this server, found by the rooms URL in their environment.
    fn room_pids(&self) -> Vec<i32> {
        let wanted = format!("TROUPE_ROOMS_URL={}", self.url);
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
            })
            .collect()
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.room_pids() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("troupe serve's log:\n{log}");
        }
    }
}

/// The image's command with what exists only in a container replaced: the source (a positional
/// argument), `--state-dir` and `--listen` (loopback, a port of the kernel's choosing).
fn command_for_test(cmd: &[String], source: &Path, state_dir: &Path) -> Vec<String> {
    let mut args = vec![];
    let mut sources = 0;
    for (i, arg) in cmd.iter().enumerate() {
        match arg.split_once('=') {
            _ if i == 0 => args.push(arg.clone()),
            Some(("--state-dir", _)) => args.push(format!("--state-dir={}", state_dir.display())),
            Some(("--listen", _)) => args.push("--listen=127.0.0.1:0".to_string()),
            Some((flag, value)) if flag.starts_with("--") => {
                assert!(
                    !value.starts_with('/'),
                    "CMD {arg}: a path in the image this test has no stand-in for"
                );
                args.push(arg.clone());
            }
            _ if arg.starts_with('-') => args.push(arg.clone()),
            _ => {
                sources += 1;
                args.push(source.display().to_string());
            }
        }
    }
    assert_eq!(
        sources, 1,
        "CMD {cmd:?}: one source, flags written --flag=value"
    );
    args
}

/// The image's `CMD`, run by the built binary with `env_clear` and only what the image defines
/// (the base image's variables and its `ENV`; `HOME` pointed at a temporary directory): no
/// toolchain, no cargo, nothing of the test's environment. It becomes ready, serves the
/// management API, and starts a room of the repository's one scheduler (the local runtime, the
/// default of `troupe serve`, which `docker run` with this command uses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn troupe_serves_with_only_the_environment_the_image_provides() {
    let df = Dockerfile::read();
    let image = df.final_stage();
    let cmd = image.exec_form("CMD").unwrap();
    let mut env = image.environment().unwrap();
    assert!(env.contains_key("PATH"), "the image sets no PATH: {env:?}");

    let repo = Repo::new();
    repo.commit(
        "one scheduler",
        &[(
            "arena.yaml",
            &scheduler_yaml("arena", 1, (44500, 44510), "1", ""),
        )],
    );
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    env.insert("HOME".to_string(), home.display().to_string());
    let args = command_for_test(&cmd, repo.path(), &tmp.path().join("state"));
    let server = ImageServer::start(&args, &env, &tmp.path().join("serve.log"));
    let environ = std::fs::read(format!("/proc/{}/environ", server.child.id())).unwrap();
    let seen: BTreeSet<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let given: BTreeSet<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(seen, given, "troupe serve's environment");

    wait_for("GET /readyz to answer 200", T, || async {
        (server.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    let (status, body) = server.get("/api/v1/schedulers").await;
    assert_eq!(status, 200, "GET /api/v1/schedulers: {body}");
    let schedulers: Vec<SchedulerSummary> = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = schedulers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["arena"], "{body}");
    wait_for("a ready room of arena", T, || async {
        let (status, body) = server.get("/api/v1/schedulers/arena/rooms").await;
        let rooms: Vec<Room> = (status == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()?;
        rooms
            .iter()
            .any(|r| r.status == RoomStatus::Ready)
            .then_some(())
    })
    .await;
}

// ---- the build context ------------------------------------------------------------------------

/// `.dockerignore`, matched as Docker does: the last pattern that matches a path or one of its
/// parent directories decides, `!` re-includes; `*` and `?` within a segment, `**` across.
struct DockerIgnore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl DockerIgnore {
    fn read() -> Self {
        let text = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore"))
            .expect("a .dockerignore next to the Dockerfile");
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (include, p) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let segments = p
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_string)
                    .collect();
                (include, segments)
            })
            .collect();
        Self { patterns }
    }

    fn excludes(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (include, pattern) in &self.patterns {
            if (1..=parts.len()).any(|n| glob(pattern, &parts[..n])) {
                excluded = !include;
            }
        }
        excluded
    }
}

fn glob(pattern: &[String], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(p), _) if p == "**" => {
            glob(&pattern[1..], path) || (!path.is_empty() && glob(pattern, &path[1..]))
        }
        (Some(p), Some(s)) => {
            segment_matches(p.as_bytes(), s.as_bytes()) && glob(&pattern[1..], &path[1..])
        }
        _ => false,
    }
}

fn segment_matches(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            segment_matches(&p[1..], s) || (!s.is_empty() && segment_matches(p, &s[1..]))
        }
        (Some(b'?'), Some(_)) => segment_matches(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => segment_matches(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Files of the working tree (relative, `/`-separated), not descending into `.git` or `target`.
fn working_tree(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if path.is_dir() {
            if rel != ".git" && rel != "target" {
                working_tree(root, &path, out);
            }
        } else {
            out.push(rel);
        }
    }
}

/// What `.dockerignore` leaves of the checkout, copied into a directory the way the build stage's
/// `COPY` lines copy it, is a package cargo loads: the manifest finds every target it declares
/// (the benches included) and Cargo.lock, and every `include_str!` finds its file. Bulky and
/// private things (target/, .git, a local state directory, logs) stay out of the context.
#[test]
fn the_build_context_holds_what_cargo_build_reads_and_nothing_bulky() {
    let root = Path::new(ROOT);
    let ignore = DockerIgnore::read();
    for bulky in [
        "target/debug/troupe",
        ".git/HEAD",
        ".troupe/rooms.jsonl",
        "serve.log",
        "tests/image.rs",
    ] {
        assert!(
            ignore.excludes(bulky),
            ".dockerignore lets {bulky} into the build context"
        );
    }
    let mut files = vec![];
    working_tree(root, root, &mut files);
    let context: Vec<String> = files.into_iter().filter(|f| !ignore.excludes(f)).collect();

    let df = Dockerfile::read();
    let build = df
        .stages
        .iter()
        .find(|s| release_binary(s).is_ok())
        .expect("a stage builds the release binary");
    let fs_root = tempfile::tempdir().unwrap();
    let in_image = |path: &str| fs_root.path().join(path.trim_start_matches('/'));
    for copy in build.copies().iter().filter(|c| c.from.is_none()) {
        for source in &copy.sources {
            let source = source.trim_end_matches('/').trim_start_matches("./");
            let taken: Vec<&String> = context
                .iter()
                .filter(|f| *f == source || f.starts_with(&format!("{source}/")))
                .collect();
            assert!(
                !taken.is_empty(),
                "Dockerfile:{}: COPY {source}: not in the build context (.dockerignore)",
                copy.line
            );
            let is_dir = root.join(source).is_dir();
            for file in taken {
                let to = if is_dir {
                    Path::new(&copy.dest).join(file.strip_prefix(&format!("{source}/")).unwrap())
                } else {
                    PathBuf::from(copy.target_of(source))
                };
                let to = in_image(&to.to_string_lossy());
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(root.join(file), &to).unwrap();
            }
        }
    }
    let workdir = in_image(&build.workdir());

    // Every file compiled in by include_str!/include_bytes! was copied too.
    let mut sources = vec![];
    working_tree(&workdir, &workdir, &mut sources);
    for file in sources.iter().filter(|f| f.ends_with(".rs")) {
        let text = std::fs::read_to_string(workdir.join(file)).unwrap();
        for marker in ["include_str!(\"", "include_bytes!(\""] {
            for (at, _) in text.match_indices(marker) {
                let rest = &text[at + marker.len()..];
                let included = &rest[..rest.find('"').unwrap()];
                let path = workdir.join(file).parent().unwrap().join(included);
                assert!(
                    path.exists(),
                    "{file} includes {included}, which the image build lacks"
                );
            }
        }
    }

    // Cargo loads the package, checks Cargo.lock and selects targets before it compiles
    // anything, so asking it for a binary that does not exist stops it right after that, with
    // nothing built.
    let probe = "troupe-build-context-probe";
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--offline", "--locked", "--bin", probe])
        .current_dir(&workdir)
        .env("CARGO_TARGET_DIR", fs_root.path().join("cargo-target"))
        .output()
        .expect("cargo runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("no bin target named `{probe}`")),
        "cargo cannot load the package from the build context:\n{text}"
    );
}

// ---- the Deployment ---------------------------------------------------------------------------

/// `deploy/deployment.yaml` runs this version's image with the image's own settings: its user
/// (runAsNonRoot can only check a numeric one), the state directory on a volume at the image's
/// volume, the port it exposes, a read-only root filesystem (the state directory is the only place
/// serve writes), no privilege escalation, no capabilities, the runtime's default seccomp profile.
#[test]
fn the_deployment_runs_the_image_as_its_user_with_its_port_and_state_volume() {
    let df = Dockerfile::read();
    let image = df.final_stage();
    let uid = user_of(&df).unwrap();
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/deployment.yaml")).unwrap();
    let deployment: Deployment = serde_saphyr::from_str(&text).expect("a Deployment");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let container: &Container = pod
        .containers
        .iter()
        .find(|c| c.name == "troupe")
        .expect("a container named troupe");

    let reference = container.image.as_deref().unwrap_or("");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        reference.ends_with(&format!("/troupe:{version}")),
        "the troupe container runs {reference:?}, not troupe:{version}"
    );

    // A container's own setting wins over the pod's.
    let pod_sc = pod.security_context.clone().unwrap_or_default();
    let sc = container.security_context.clone().unwrap_or_default();
    assert_eq!(
        sc.run_as_non_root.or(pod_sc.run_as_non_root),
        Some(true),
        "runAsNonRoot"
    );
    assert_eq!(
        sc.run_as_user.or(pod_sc.run_as_user),
        Some(i64::from(uid)),
        "runAsUser is not the image's USER"
    );
    let seccomp = sc.seccomp_profile.clone().or(pod_sc.seccomp_profile);
    assert_eq!(
        seccomp.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault"),
        "seccompProfile"
    );
    assert_eq!(
        sc.allow_privilege_escalation,
        Some(false),
        "allowPrivilegeEscalation"
    );
    assert_eq!(
        sc.read_only_root_filesystem,
        Some(true),
        "readOnlyRootFilesystem"
    );
    let dropped = sc.capabilities.and_then(|c| c.drop).unwrap_or_default();
    assert!(
        dropped.iter().any(|c| c == "ALL"),
        "capabilities drop {dropped:?}"
    );

    let args = container.args.clone().unwrap_or_default();
    assert_eq!(
        args.first().map(String::as_str),
        Some("serve"),
        "args {args:?}"
    );
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
            .unwrap_or_else(|| panic!("the troupe container passes no --{name}=: {args:?}"))
    };
    let state_dir = flag("state-dir");
    assert!(
        image.volumes().contains(&state_dir),
        "--state-dir={state_dir} is not the image's volume {:?}",
        image.volumes()
    );
    let mounts = container.volume_mounts.clone().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_path == state_dir && m.read_only != Some(true)),
        "nothing writable is mounted at the state directory {state_dir}: {mounts:?}"
    );
    let port = flag("listen").parse::<SocketAddr>().unwrap().port();
    assert!(
        image.exposed().contains(&port),
        "listens on {port}, the image exposes {:?}",
        image.exposed()
    );
    let ports: Vec<i32> = container
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert!(
        ports.contains(&i32::from(port)),
        "containerPort {ports:?}, listens on {port}"
    );
}
