//! The rules file: its format, and loading it so that a mistake is an error
//! rather than a silently weaker policy.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::patterns::resolve_physical;

/// A rules file, as written (TOML).
///
/// Unknown keys are errors: a misspelt `deny_privilegd = true` must not
/// quietly leave privileged containers allowed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rules {
    /// What happens when no rule matches.
    #[serde(default)]
    pub(crate) default: Action,
    /// TLS client certificate CNs that may only make read-only calls.
    #[serde(default)]
    pub(crate) read_only_users: Vec<String>,
    /// Checks on what containers (and volumes) may do.
    #[serde(default)]
    pub(crate) containers: Containers,
    /// Method and path rules, tried in order; the first match decides.
    #[serde(default, rename = "rule")]
    pub(crate) rules: Vec<Rule>,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    /// Let the request through.
    #[default]
    Allow,
    /// Refuse it.
    Deny,
}

/// Checks on container, exec and volume creation; they only ever deny.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Containers {
    /// Refuse `--privileged` containers and privileged `exec`.
    #[serde(default)]
    pub(crate) deny_privileged: bool,
    /// Refuse `--cap-add`, except for the capabilities in `allow_cap_add`.
    #[serde(default)]
    pub(crate) deny_cap_add: bool,
    /// Capabilities that may still be added, e.g. `NET_BIND_SERVICE`.
    #[serde(default)]
    pub(crate) allow_cap_add: Vec<String>,
    /// When set, host paths may be mounted only from under these
    /// directories; an empty list refuses every host path.
    #[serde(default)]
    pub(crate) bind_prefixes: Option<Vec<PathBuf>>,
    /// Images that may not be run or pulled; see `ImageRef::matches`.
    #[serde(default)]
    pub(crate) deny_images: Vec<String>,
}

/// One method and path rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rule {
    /// Named in every denial it causes.
    pub(crate) name: String,
    /// Allow or deny.
    pub(crate) action: Action,
    /// HTTP methods, any case; empty for every method.
    #[serde(default)]
    pub(crate) methods: Vec<String>,
    /// Path globs over the API path without its version prefix, e.g.
    /// `/containers/*/exec`.
    pub(crate) paths: Vec<String>,
    /// Shown to the user on a denial; a generic text otherwise.
    #[serde(default)]
    pub(crate) message: Option<String>,
}

/// Why a rules file was refused.
#[derive(Debug)]
pub(crate) struct RulesError {
    path: PathBuf,
    reason: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rules file {}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for RulesError {}

impl Rules {
    /// Reads and checks the rules file at `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, RulesError> {
        let error = |reason: String| RulesError {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let rules: Rules = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
        rules.check().map_err(error)?;
        Ok(rules)
    }

    fn check(&self) -> Result<(), String> {
        for rule in &self.rules {
            if rule.name.trim().is_empty() {
                return Err("a rule has an empty name".into());
            }
            if rule.paths.is_empty() || rule.paths.iter().any(|p| !p.starts_with('/')) {
                return Err(format!(
                    "rule {:?}: paths must be a non-empty list of patterns starting with '/'",
                    rule.name
                ));
            }
        }
        // A prefix is compared with the physical path of each bind source,
        // so it must itself be physical: no symlinks, no `..`.
        for prefix in self.containers.bind_prefixes.iter().flatten() {
            if !prefix.is_absolute() {
                return Err(format!("bind prefix {} is not absolute", prefix.display()));
            }
            let physical = resolve_physical(prefix)
                .map_err(|e| format!("bind prefix {}: {e}", prefix.display()))?;
            if physical != *prefix {
                return Err(format!(
                    "bind prefix {} leads to {}; give the path without symlinks or '..'",
                    prefix.display(),
                    physical.display()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Rules, RulesError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, text).unwrap();
        Rules::load(&path)
    }

    #[test]
    fn a_full_rules_file_loads() {
        let rules = load_str(
            r#"
            default = "deny"
            read_only_users = ["auditor"]
            [containers]
            deny_privileged = true
            deny_cap_add = true
            allow_cap_add = ["NET_BIND_SERVICE"]
            bind_prefixes = ["/srv"]
            deny_images = ["evil/*"]
            [[rule]]
            name = "ping"
            action = "allow"
            methods = ["GET", "HEAD"]
            paths = ["/_ping"]
            "#,
        )
        .unwrap();
        assert_eq!(rules.default, Action::Deny);
        assert_eq!(rules.rules[0].name, "ping");
        assert!(rules.containers.deny_privileged);
    }

    #[test]
    fn misspelt_keys_are_refused() {
        let err = load_str("[containers]\ndeny_privilegd = true\n").unwrap_err();
        assert!(err.to_string().contains("deny_privilegd"), "{err}");
    }

    #[test]
    fn prefixes_with_symlinks_or_dot_dot_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = resolve_physical(dir.path()).unwrap();
        std::os::unix::fs::symlink("/etc", real.join("link")).unwrap();
        for bad in [real.join("link"), real.join("a/../b"), PathBuf::from("srv")] {
            let text = format!("[containers]\nbind_prefixes = [{:?}]\n", bad);
            assert!(load_str(&text).is_err(), "{}", bad.display());
        }
        let text = format!("[containers]\nbind_prefixes = [{:?}]\n", real);
        assert!(load_str(&text).is_ok());
    }

    #[test]
    fn rules_need_a_name_and_absolute_paths() {
        let bad = "[[rule]]\nname = \"x\"\naction = \"deny\"\npaths = [\"containers\"]\n";
        assert!(load_str(bad).is_err());
        let bad = "[[rule]]\nname = \"\"\naction = \"deny\"\npaths = [\"/x\"]\n";
        assert!(load_str(bad).is_err());
    }
}
