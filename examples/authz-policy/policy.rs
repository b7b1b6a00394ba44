//! The policy: rules evaluated against each API request, reloadable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use docker_plugin_sdk::authz::{ApiRequest, AuthzPlugin, Decision};
use docker_plugin_sdk::{DriverError, async_trait};

use crate::checks::{self, Denial};
use crate::patterns::glob;
use crate::rules::{Action, Rules};

/// The rules in force and the file they came from.
pub(crate) struct Policy {
    path: PathBuf,
    rules: RwLock<Arc<Rules>>,
}

impl Policy {
    /// Loads the rules file; a broken file is an error, so the plugin never
    /// starts with a policy other than the one written.
    pub(crate) fn load(path: &Path) -> Result<Self, crate::rules::RulesError> {
        let rules = Rules::load(path)?;
        Ok(Self::with_rules(path, rules))
    }

    /// A policy with rules already loaded.
    pub(crate) fn with_rules(path: &Path, rules: Rules) -> Self {
        Self {
            path: path.to_owned(),
            rules: RwLock::new(Arc::new(rules)),
        }
    }

    /// Reads the rules file again. A file that does not load leaves the
    /// rules in force unchanged, and the log says why.
    pub(crate) fn reload(&self) {
        match Rules::load(&self.path) {
            Ok(rules) => {
                let count = rules.rules.len();
                *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
                tracing::info!(path = %self.path.display(), rules = count, "rules reloaded");
            }
            Err(err) => {
                tracing::warn!(error = %err, "rules not reloaded; keeping the previous rules");
            }
        }
    }

    fn current(&self) -> Arc<Rules> {
        Arc::clone(&self.rules.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl AuthzPlugin for Policy {
    async fn authz_req(&self, req: &ApiRequest) -> Result<Decision, DriverError> {
        let rules = self.current();
        let user = req.tls_user().unwrap_or("");
        match evaluate(&rules, req) {
            Ok(rule) => {
                tracing::debug!(rule, method = %req.method, path = req.uri.path(), user, "allowed");
                Ok(Decision::allow())
            }
            Err(denial) => {
                tracing::info!(
                    rule = denial.rule,
                    method = %req.method,
                    path = req.uri.path(),
                    user,
                    "denied: {}",
                    denial.detail
                );
                Ok(Decision::deny(format!(
                    "rule {:?}: {}",
                    denial.rule, denial.detail
                )))
            }
        }
    }
}

/// Decides one request: the name of the allowing rule, or the denial.
///
/// Order: read-only users, then the container checks (which only deny and
/// so cannot be bypassed by an allow rule), then the rules in file order,
/// then the default.
pub(crate) fn evaluate(rules: &Rules, req: &ApiRequest) -> Result<String, Denial> {
    if let Some(user) = req.tls_user()
        && rules.read_only_users.iter().any(|u| u == user)
        && !is_read_only(req)
    {
        return Err(Denial::new(
            "read_only_users",
            format!("user {user:?} may only make read-only calls"),
        ));
    }

    checks::check(&rules.containers, req)?;

    let path = req.uri.path();
    for rule in &rules.rules {
        let method_matches = rule.methods.is_empty() || rule.methods.iter().any(|m| req.is(m));
        if method_matches && rule.paths.iter().any(|p| glob(p, path)) {
            return match rule.action {
                Action::Allow => Ok(rule.name.clone()),
                Action::Deny => Err(Denial::new(
                    &rule.name,
                    rule.message
                        .clone()
                        .unwrap_or_else(|| format!("{} {path} is not allowed", req.method)),
                )),
            };
        }
    }

    match rules.default {
        Action::Allow => Ok("default".to_owned()),
        Action::Deny => Err(Denial::new(
            "default",
            format!("{} {path} is not allowed", req.method),
        )),
    }
}

/// GET and HEAD, except the websocket attach, which is a GET that writes
/// to the container's stdin.
fn is_read_only(req: &ApiRequest) -> bool {
    (req.is("GET") || req.is("HEAD")) && !glob("/containers/*/attach/ws", req.uri.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Containers, Rule};
    use docker_plugin_sdk::authz::AuthzRequest;
    use std::path::PathBuf;

    fn strict(prefix: &Path) -> Rules {
        Rules {
            default: Action::Allow,
            read_only_users: vec!["auditor".into()],
            containers: Containers {
                deny_privileged: true,
                deny_cap_add: true,
                allow_cap_add: vec!["net_bind_service".into()],
                bind_prefixes: Some(vec![prefix.to_owned()]),
                deny_images: vec!["evil/*".into(), "busybox:1.0".into()],
            },
            rules: vec![
                Rule {
                    name: "no-exec".into(),
                    action: Action::Deny,
                    methods: vec!["post".into()],
                    paths: vec!["/exec/*/start".into()],
                    message: Some("exec is disabled here".into()),
                },
                Rule {
                    name: "ping".into(),
                    action: Action::Allow,
                    methods: vec![],
                    paths: vec!["/_ping".into()],
                    message: None,
                },
            ],
        }
    }

    fn prefix() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let real = crate::patterns::resolve_physical(dir.path()).unwrap();
        (dir, real)
    }

    fn create(body: &str) -> ApiRequest {
        let wire = AuthzRequest::new("POST", "/v1.45/containers/create")
            .header("Content-Type", "application/json")
            .body(body.as_bytes());
        ApiRequest::from_wire(&wire).unwrap()
    }

    fn call(method: &str, uri: &str) -> ApiRequest {
        ApiRequest::from_wire(&AuthzRequest::new(method, uri)).unwrap()
    }

    fn rule_of(rules: &Rules, req: &ApiRequest) -> Result<String, String> {
        evaluate(rules, req).map_err(|d| d.rule)
    }

    #[test]
    fn privileged_is_denied_however_the_key_is_spelt() {
        let (_d, p) = prefix();
        let rules = strict(&p);
        for body in [
            r#"{"Image":"alpine","HostConfig":{"Privileged":true}}"#,
            r#"{"Image":"alpine","HostConfig":{"Privileged":false,"privileged":true}}"#,
            r#"{"Image":"alpine","hostconfig":{"PRIVILEGED":true}}"#,
            r#"{"Image":"alpine","HostConfig":{"Privileged":true},"HostConfig":{}}"#,
            r#"{"Image":"alpine","HostConfig":{"Privileged":true,"Privileged":null}}"#,
        ] {
            assert_eq!(
                rule_of(&rules, &create(body)),
                Err("containers.deny_privileged".into()),
                "{body}"
            );
        }
        let ok = r#"{"Image":"alpine","HostConfig":{"Privileged":true,"privileged":false}}"#;
        assert_eq!(rule_of(&rules, &create(ok)), Ok("default".into()));
    }

    #[test]
    fn added_capabilities_are_denied_unless_listed() {
        let (_d, p) = prefix();
        let rules = strict(&p);
        let bad = r#"{"Image":"a","HostConfig":{"CapAdd":["NET_BIND_SERVICE","sys_admin"]}}"#;
        let err = evaluate(&rules, &create(bad)).unwrap_err();
        assert_eq!(err.rule, "containers.deny_cap_add");
        assert!(err.detail.contains("SYS_ADMIN"), "{}", err.detail);
        let bad = r#"{"Image":"a","HostConfig":{"CapAdd":[],"Capadd":["ALL"]}}"#;
        assert!(evaluate(&rules, &create(bad)).is_err());
        let ok = r#"{"Image":"a","HostConfig":{"CapAdd":["CAP_NET_BIND_SERVICE"]}}"#;
        assert!(evaluate(&rules, &create(ok)).is_ok());
    }

    #[test]
    fn host_paths_must_stay_under_a_prefix_after_dot_dot_and_symlinks() {
        let (_d, p) = prefix();
        std::fs::create_dir(p.join("data")).unwrap();
        std::os::unix::fs::symlink("/etc", p.join("data/etc")).unwrap();
        let rules = strict(&p.join("data"));
        let bind = |src: String| {
            let body = serde_json::json!({"Image": "a", "HostConfig": {"Binds": [src]}});
            rule_of(&rules, &create(&body.to_string()))
        };
        let data = p.join("data");
        assert!(bind(format!("{}/x:/x", data.display())).is_ok());
        assert!(bind("named-volume:/x".into()).is_ok());
        for bad in [
            format!("{}/../x:/x:ro", data.display()),
            format!("{}/etc:/x", data.display()),
            "/:/host".into(),
            format!("{}x:/x", data.display()),
        ] {
            assert_eq!(
                bind(bad.clone()),
                Err("containers.bind_prefixes".into()),
                "{bad}"
            );
        }

        let mount = r#"{"Image":"a","HostConfig":{"Mounts":[{"type":"BIND","source":"/etc"}]}}"#;
        assert!(evaluate(&rules, &create(mount)).is_err());
        let device = r#"{"Image":"a","HostConfig":{"Mounts":[{"Type":"volume","Source":"v",
            "VolumeOptions":{"DriverConfig":{"Options":{"o":"bind","device":"/root"}}}}]}}"#;
        assert!(evaluate(&rules, &create(device)).is_err());
        let hidden = r#"{"Image":"a","HostConfig":{"Binds":[]},"hostConfig":{"bindſ":["/:/h"]}}"#;
        assert!(evaluate(&rules, &create(hidden)).is_err());
    }

    #[test]
    fn volumes_backed_by_host_paths_are_checked_too() {
        let (_d, p) = prefix();
        let rules = strict(&p);
        let wire = AuthzRequest::new("POST", "/v1.41/volumes/create")
            .header("Content-Type", "application/json")
            .body(br#"{"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"/etc"}}"#);
        let err = evaluate(&rules, &ApiRequest::from_wire(&wire).unwrap()).unwrap_err();
        assert_eq!(err.rule, "containers.bind_prefixes");
    }

    #[test]
    fn denied_images_are_refused_for_run_and_pull() {
        let (_d, p) = prefix();
        let rules = strict(&p);
        for image in [
            "evil/miner",
            "docker.io/evil/miner:v1",
            "busybox:1.0",
            "3d9be48ee7db",
        ] {
            let body = serde_json::json!({"Image": image}).to_string();
            assert_eq!(
                rule_of(&rules, &create(&body)),
                Err("containers.deny_images".into()),
                "{image}"
            );
        }
        let body = r#"{"Image":"busybox:1.36"}"#;
        assert!(evaluate(&rules, &create(body)).is_ok());
        let pull = call(
            "POST",
            "/v1.45/images/create?fromImage=evil%2Fminer&tag=latest",
        );
        assert!(evaluate(&rules, &pull).is_err());
        let pull = call("POST", "/v1.45/images/create?fromImage=busybox&tag=1.0");
        assert!(evaluate(&rules, &pull).is_err());
    }

    #[test]
    fn a_create_without_a_readable_body_is_denied() {
        let (_d, p) = prefix();
        let rules = strict(&p);
        let chunked = AuthzRequest::new("POST", "/v1.43/containers/create")
            .header("Content-Type", "application/json");
        let err = evaluate(&rules, &ApiRequest::from_wire(&chunked).unwrap()).unwrap_err();
        assert_eq!(err.rule, "containers.body");
        assert!(err.detail.contains("no body"), "{}", err.detail);
        let err = evaluate(&rules, &create("not json")).unwrap_err();
        assert!(err.detail.contains("not JSON"), "{}", err.detail);
    }

    #[test]
    fn old_api_starts_carry_a_host_config_and_are_checked() {
        let (_d, p) = prefix();
        let rules = strict(&p);
        let wire = AuthzRequest::new("POST", "/v1.23/containers/c1/start")
            .header("Content-Type", "application/json")
            .body(br#"{"Privileged":true}"#);
        assert!(evaluate(&rules, &ApiRequest::from_wire(&wire).unwrap()).is_err());
        assert!(evaluate(&rules, &call("POST", "/v1.23/containers/c1/start")).is_err());
        assert!(evaluate(&rules, &call("POST", "/v1.45/containers/c1/start")).is_ok());
    }

    #[test]
    fn privileged_exec_is_denied() {
        let (_d, p) = prefix();
        let rules = strict(&p);
        let wire = AuthzRequest::new("POST", "/v1.45/containers/c1/exec")
            .body(br#"{"Cmd":["sh"],"privileged":true}"#);
        let err = evaluate(&rules, &ApiRequest::from_wire(&wire).unwrap()).unwrap_err();
        assert_eq!(err.rule, "containers.deny_privileged");
    }

    #[test]
    fn rules_apply_in_order_then_the_default() {
        let (_d, p) = prefix();
        let mut rules = strict(&p);
        assert_eq!(
            rule_of(&rules, &call("POST", "/v1.45/exec/e1/start")),
            Err("no-exec".into())
        );
        assert_eq!(rule_of(&rules, &call("HEAD", "/_ping")), Ok("ping".into()));
        rules.default = Action::Deny;
        assert_eq!(
            rule_of(&rules, &call("GET", "/v1.45/containers/json")),
            Err("default".into())
        );
        // The path a rule sees is the one the daemon routes.
        assert_eq!(
            rule_of(&rules, &call("POST", "/v1.45/%65xec/e1/./start")),
            Err("no-exec".into())
        );
    }

    #[test]
    fn tls_users_listed_as_read_only_may_only_read() {
        let (_d, p) = prefix();
        let rules = strict(&p);
        let as_user = |method: &str, uri: &str, user: &str| {
            ApiRequest::from_wire(&AuthzRequest::new(method, uri).tls_user(user)).unwrap()
        };
        assert!(evaluate(&rules, &as_user("GET", "/v1.45/containers/json", "auditor")).is_ok());
        let err = evaluate(
            &rules,
            &as_user("POST", "/v1.45/containers/c/kill", "auditor"),
        );
        assert_eq!(err.unwrap_err().rule, "read_only_users");
        let ws = as_user("GET", "/v1.45/containers/c/attach/ws", "auditor");
        assert!(evaluate(&rules, &ws).is_err());
        assert!(evaluate(&rules, &as_user("POST", "/v1.45/containers/c/kill", "ops")).is_ok());
        // The same name without TLS authentication is nobody in particular.
        let mut wire = AuthzRequest::new("POST", "/v1.45/containers/c/kill");
        wire.user = Some("auditor".into());
        assert!(evaluate(&rules, &ApiRequest::from_wire(&wire).unwrap()).is_ok());
    }

    #[tokio::test]
    async fn denials_name_the_rule_and_a_bad_reload_keeps_the_old_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "[containers]\ndeny_privileged = true\n").unwrap();
        let policy = Policy::load(&path).unwrap();
        let privileged = create(r#"{"Image":"a","HostConfig":{"Privileged":true}}"#);
        let decision = policy.authz_req(&privileged).await.unwrap();
        assert!(!decision.is_allowed());
        assert_eq!(
            decision.message(),
            "rule \"containers.deny_privileged\": privileged containers are not allowed"
        );

        std::fs::write(&path, "[containers]\ndeny_privileged = maybe\n").unwrap();
        policy.reload();
        assert!(!policy.authz_req(&privileged).await.unwrap().is_allowed());

        std::fs::write(&path, "[containers]\ndeny_privileged = false\n").unwrap();
        policy.reload();
        assert!(policy.authz_req(&privileged).await.unwrap().is_allowed());
    }
}
