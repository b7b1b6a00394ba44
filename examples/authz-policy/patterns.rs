//! Matching: path globs, physical host paths, image references.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Matches `text` against a glob where `*` and `?` stay within one `/`
/// segment and `**` crosses segments.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // matches[j]: whether the pattern so far matches the first j chars.
    let mut matches = vec![false; t.len() + 1];
    matches[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; t.len() + 1];
        if p[i] == '*' {
            let crosses = p.get(i + 1) == Some(&'*');
            for j in 0..=t.len() {
                // Either the star matches nothing here, or it extends the
                // match one char further (which `*` may not do across '/').
                next[j] = matches[j] || (j > 0 && next[j - 1] && (crosses || t[j - 1] != '/'));
            }
            i += if crosses { 2 } else { 1 };
        } else {
            for j in 1..=t.len() {
                let one = if p[i] == '?' {
                    t[j - 1] != '/'
                } else {
                    p[i] == t[j - 1]
                };
                next[j] = matches[j - 1] && one;
            }
            i += 1;
        }
        matches = next;
    }
    matches[t.len()]
}

/// Where `path` really leads on this host: `.` and `..` applied and every
/// symlink followed, as the kernel does when the daemon mounts it. Parts
/// that do not exist yet are taken as written (the daemon creates them).
///
/// Relative paths are taken from `/`, which is where the daemon's own
/// working directory is.
pub(crate) fn resolve_physical(path: &Path) -> io::Result<PathBuf> {
    const MAX_LINKS: usize = 40;
    let mut pending: VecDeque<OsString> = components(path);
    let mut out = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        match part.to_str() {
            Some("/") => out = PathBuf::from("/"),
            Some(".") => {}
            Some("..") => {
                out.pop();
            }
            _ => {
                let next = out.join(&part);
                match fs::symlink_metadata(&next) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(io::Error::other("too many levels of symbolic links"));
                        }
                        let target = fs::read_link(&next)?;
                        for (i, c) in components(&target).into_iter().enumerate() {
                            pending.insert(i, c);
                        }
                    }
                    _ => out = next,
                }
            }
        }
    }
    Ok(out)
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .map(|c| match c {
            Component::RootDir => OsString::from("/"),
            Component::CurDir => OsString::from("."),
            Component::ParentDir => OsString::from(".."),
            Component::Normal(s) => s.to_owned(),
            Component::Prefix(p) => p.as_os_str().to_owned(),
        })
        .collect()
}

/// An image reference in the daemon's normal form:
/// `docker.io/library/busybox:latest` for `busybox`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRef {
    /// Registry and repository, e.g. `docker.io/library/busybox`.
    pub(crate) repo: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub(crate) tag: Option<String>,
    /// The digest after `@`, if any.
    pub(crate) digest: Option<String>,
}

impl ImageRef {
    /// Normalises a reference as the daemon does (lower-cased, so that the
    /// comparison errs towards a match).
    pub(crate) fn parse(reference: &str) -> Self {
        let reference = reference.trim().to_ascii_lowercase();
        let (name, digest) = match reference.split_once('@') {
            Some((name, digest)) => (name.to_owned(), Some(digest.to_owned())),
            None => (reference.clone(), None),
        };
        let slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[slash..].rfind(':') {
            Some(i) => (
                name[..slash + i].to_owned(),
                Some(name[slash + i + 1..].to_owned()),
            ),
            None => (name.clone(), None),
        };
        let tag = tag.or_else(|| digest.is_none().then(|| "latest".to_owned()));

        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), name.clone()),
        };
        let domain = if domain == "index.docker.io" {
            "docker.io".to_owned()
        } else {
            domain
        };
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        Self {
            repo: format!("{domain}/{path}"),
            tag,
            digest,
        }
    }

    /// Whether the reference may be an image ID, which only the daemon can
    /// map to a name: `sha256:...` or a bare hex string.
    pub(crate) fn may_be_id(reference: &str) -> bool {
        let r = reference.trim().to_ascii_lowercase();
        r.starts_with("sha256:") || (r.len() >= 4 && r.chars().all(|c| c.is_ascii_hexdigit()))
    }

    /// Whether this reference matches `pattern`, itself a reference whose
    /// repository and tag may hold globs; a pattern without a tag matches
    /// every tag.
    pub(crate) fn matches(&self, pattern: &str) -> bool {
        let has_tag = {
            let p = pattern.split('@').next().unwrap_or_default();
            let last = p.rsplit('/').next().unwrap_or_default();
            last.contains(':')
        };
        let p = ImageRef::parse(pattern);
        if !glob(&p.repo, &self.repo) {
            return false;
        }
        if has_tag {
            let tag = self.tag.as_deref().unwrap_or_default();
            return glob(p.tag.as_deref().unwrap_or_default(), tag);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_star_stays_in_one_segment() {
        assert!(glob("/containers/*/exec", "/containers/abc/exec"));
        assert!(!glob("/containers/*/exec", "/containers/a/b/exec"));
        assert!(glob("/containers/**", "/containers/a/b/exec"));
        assert!(glob("/plugins**", "/plugins"));
        assert!(glob("/_ping", "/_ping"));
        assert!(!glob("/_ping", "/_pingx"));
        assert!(glob("/v?/x", "/v1/x"));
        assert!(!glob("/containers/*", "/containers"));
    }

    #[test]
    fn dot_dot_and_symlinks_are_followed_like_the_kernel_does() {
        let dir = tempfile::tempdir().unwrap();
        let root = resolve_physical(dir.path()).unwrap();
        std::fs::create_dir(root.join("allowed")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("allowed/escape")).unwrap();
        std::os::unix::fs::symlink("..", root.join("allowed/up")).unwrap();

        let r = |p: &str| resolve_physical(&root.join(p)).unwrap();
        assert_eq!(r("allowed/escape/ssl"), PathBuf::from("/etc/ssl"));
        assert_eq!(r("allowed/up/x"), root.join("x"));
        assert_eq!(r("allowed/new/../y"), root.join("allowed/y"));
        assert_eq!(
            resolve_physical(Path::new("/a/../../b")).unwrap(),
            PathBuf::from("/b")
        );
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        assert!(resolve_physical(&dir.path().join("loop/x")).is_err());
    }

    #[test]
    fn image_references_are_normalised() {
        let r = ImageRef::parse("busybox");
        assert_eq!(r.repo, "docker.io/library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = ImageRef::parse("localhost:5000/team/app:1.2");
        assert_eq!(r.repo, "localhost:5000/team/app");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        let r = ImageRef::parse("index.docker.io/evil/miner@sha256:ab");
        assert_eq!(r.repo, "docker.io/evil/miner");
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some("sha256:ab")));
    }

    #[test]
    fn image_patterns_match_every_spelling_of_a_name() {
        for image in [
            "busybox",
            "library/busybox:1.36",
            "docker.io/library/busybox",
        ] {
            assert!(ImageRef::parse(image).matches("busybox"), "{image}");
        }
        assert!(ImageRef::parse("evil/miner:v2").matches("evil/*"));
        assert!(!ImageRef::parse("good/app").matches("evil/*"));
        assert!(!ImageRef::parse("busybox:1.36").matches("busybox:latest"));
        assert!(ImageRef::parse("BusyBox").matches("busybox"));
        assert!(ImageRef::may_be_id("sha256:0123"));
        assert!(ImageRef::may_be_id("3d9be48ee7db"));
        assert!(!ImageRef::may_be_id("alpine"));
    }
}
