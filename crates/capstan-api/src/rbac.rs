//! Authorization with Argo CD's RBAC grammar and semantics, so an `argocd-rbac-cm` policy
//! works as it is.
//!
//! A policy is CSV lines:
//! - `p, SUBJECT, RESOURCE, ACTION, OBJECT, EFFECT` — `EFFECT` is `allow` or `deny`;
//!   `RESOURCE`, `ACTION` and `OBJECT` are globs (`*` matches any text, `/` included;
//!   `?` one character), so `applications, *, team-a/*` covers every action on team-a's
//!   Applications (objects are `PROJECT/APP`, or `PROJECT/NAMESPACE/APP`);
//! - `g, SUBJECT, ROLE` — SUBJECT (a user, a group from SSO, or a role) has ROLE's
//!   permissions; roles inherit transitively;
//! - `#` starts a comment; blank lines are skipped.
//!
//! A request by a user with groups is allowed when some `p` line of the user, one of the
//! groups, or a role any of them reaches (including `policy.default`, which every
//! authenticated subject has) allows it, and **no such line denies it**: deny wins, and
//! anything not allowed is denied. The built-in roles `role:readonly` and `role:admin` are
//! always defined (Argo CD's `builtin-policy.csv`).
//!
//! Start reading at [`Policy::parse`] and [`Policy::enforce`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use globset::{Glob, GlobMatcher};

/// The resources Argo CD's RBAC knows; a policy line naming another is refused (a typo would
/// otherwise silently grant nothing).
pub const RESOURCES: &[&str] = &[
    "applications",
    "applicationsets",
    "clusters",
    "projects",
    "repositories",
    "repositories-write",
    "accounts",
    "certificates",
    "gpgkeys",
    "logs",
    "exec",
    "extensions",
];

/// Argo CD's built-in roles, always part of a policy.
pub const BUILTIN_POLICY: &str = "\
# role:readonly may read everything (but not secrets) and nothing else.
p, role:readonly, applications, get, */*, allow
p, role:readonly, applicationsets, get, */*, allow
p, role:readonly, certificates, get, *, allow
p, role:readonly, clusters, get, *, allow
p, role:readonly, repositories, get, *, allow
p, role:readonly, projects, get, *, allow
p, role:readonly, accounts, get, *, allow
p, role:readonly, gpgkeys, get, *, allow
p, role:readonly, logs, get, */*, allow
# role:admin may do everything.
p, role:admin, applications, *, */*, allow
p, role:admin, applicationsets, *, */*, allow
p, role:admin, clusters, *, *, allow
p, role:admin, repositories, *, *, allow
p, role:admin, repositories-write, *, *, allow
p, role:admin, certificates, *, *, allow
p, role:admin, accounts, *, *, allow
p, role:admin, gpgkeys, *, *, allow
p, role:admin, projects, *, *, allow
p, role:admin, logs, *, */*, allow
p, role:admin, exec, *, */*, allow
p, role:admin, extensions, *, *, allow
g, role:admin, role:readonly
g, admin, role:admin
";

/// Whether a `p` line allows or denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Grants the request.
    Allow,
    /// Refuses it, whatever else allows it.
    Deny,
}

/// A policy that does not parse: the line (1-based, in the text given) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy line {line}: {problem}")]
pub struct PolicyError {
    /// The line number.
    pub line: usize,
    /// What is wrong and how to write it.
    pub problem: String,
}

#[derive(Clone, Debug)]
struct Rule {
    subject: String,
    resource: GlobMatcher,
    action: GlobMatcher,
    object: GlobMatcher,
    effect: Effect,
}

/// Who asks: an account or SSO user, and its groups (from the token's group claims, per the
/// configured scopes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// The user (local account name, or the SSO subject/email).
    pub user: String,
    /// The user's groups.
    pub groups: Vec<String>,
}

impl Subject {
    /// A user without groups.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            user: name.into(),
            groups: Vec::new(),
        }
    }
}

/// A parsed policy: the built-in roles, the given lines and `policy.default`.
#[derive(Clone, Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Subject → the roles it has directly (`g` lines).
    roles: HashMap<String, Vec<String>>,
    default_role: Option<String>,
}

impl Policy {
    /// Parses `csv` (Argo CD's `policy.csv`) on top of the built-in roles; `default_role` is
    /// `policy.default` (e.g. `role:readonly`), given to every authenticated subject.
    pub fn parse(csv: &str, default_role: Option<&str>) -> Result<Self, PolicyError> {
        let mut policy = Self {
            rules: Vec::new(),
            roles: HashMap::new(),
            default_role: default_role
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
        };
        policy
            .add_lines(BUILTIN_POLICY)
            .expect("the built-in policy parses");
        policy.add_lines(csv)?;
        Ok(policy)
    }

    fn add_lines(&mut self, csv: &str) -> Result<(), PolicyError> {
        for (index, raw) in csv.lines().enumerate() {
            match parse_line(raw, index + 1)? {
                None => {}
                Some(Line::Permission(rule)) => self.rules.push(*rule),
                Some(Line::Role { subject, role }) => {
                    self.roles.entry(subject).or_default().push(role);
                }
            }
        }
        Ok(())
    }

    /// Every subject `who` acts as: the user, the groups, `policy.default`, and every role
    /// they reach through `g` lines (cycles are harmless).
    pub fn subjects_of(&self, who: &Subject) -> BTreeSet<String> {
        let mut reached = BTreeSet::new();
        let mut pending: Vec<String> = std::iter::once(who.user.clone())
            .chain(who.groups.iter().cloned())
            .chain(self.default_role.iter().cloned())
            .filter(|s| !s.is_empty())
            .collect();
        while let Some(subject) = pending.pop() {
            if !reached.insert(subject.clone()) {
                continue;
            }
            if let Some(roles) = self.roles.get(&subject) {
                pending.extend(roles.iter().cloned());
            }
        }
        reached
    }

    /// Whether `who` may do `action` on `resource` `object` (see the [module docs](self)).
    pub fn enforce(&self, who: &Subject, resource: &str, action: &str, object: &str) -> bool {
        self.enforce_with(who, &[], resource, action, object)
    }

    /// As [`Policy::enforce`], with the lines of a project role besides this policy's (for a
    /// caller holding that role's token): one set of lines, so a `deny` in either wins.
    pub fn enforce_with(
        &self,
        who: &Subject,
        roles: &[Arc<RolePolicy>],
        resource: &str,
        action: &str,
        object: &str,
    ) -> bool {
        let subjects = self.subjects_of(who);
        let role_rules = roles.iter().flat_map(|r| r.rules.iter());
        let mut allowed = false;
        for rule in self
            .rules
            .iter()
            .chain(role_rules)
            .filter(|r| subjects.contains(&r.subject))
        {
            if rule.resource.is_match(resource)
                && rule.action.is_match(action)
                && rule.object.is_match(object)
            {
                match rule.effect {
                    Effect::Deny => return false,
                    Effect::Allow => allowed = true,
                }
            }
        }
        allowed
    }
}

/// The subject a project role's tokens stand for: `proj:PROJECT:ROLE`.
pub fn project_role_subject(project: &str, role: &str) -> String {
    format!("proj:{project}:{role}")
}

/// The project and role of a `proj:PROJECT:ROLE` subject; `None` for any other subject.
pub fn parse_project_role_subject(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix("proj:")?;
    let (project, role) = rest.split_once(':')?;
    (!project.is_empty() && !role.is_empty() && !role.contains(':')).then_some((project, role))
}

/// The permissions a project role's own policy lines give (Argo CD's project roles:
/// `spec.roles[].policies`, e.g. `p, proj:team-a:ci, applications, sync, team-a/*, allow`).
///
/// Argo CD's rule, enforced here and not only when the project is validated: a role may grant
/// only within its project. Of the role's lines, only `p` lines whose subject is the role
/// (`proj:PROJECT:ROLE`) count, and an `allow` line counts only when its object pattern starts
/// with `PROJECT/` (so it can match nothing outside the project: `*/*` or `other/*` grant
/// nothing). `deny` lines count whatever their object, since they only take away. Lines that
/// do not parse are ignored (project validation reports them).
#[derive(Clone, Debug)]
pub struct RolePolicy {
    project: String,
    role: String,
    /// The lines kept, as written (for equality and debugging).
    lines: Vec<String>,
    rules: Vec<Rule>,
}

impl PartialEq for RolePolicy {
    fn eq(&self, other: &Self) -> bool {
        self.project == other.project && self.role == other.role && self.lines == other.lines
    }
}

impl Eq for RolePolicy {}

impl RolePolicy {
    /// The permissions of role `role` of project `project` with policy lines `policies`.
    /// The role's subject in policy lines: `proj:PROJECT:ROLE`.
    pub fn subject(&self) -> String {
        project_role_subject(&self.project, &self.role)
    }

    pub fn new(project: &str, role: &str, policies: &[String]) -> Self {
        let subject = project_role_subject(project, role);
        let inside = format!("{project}/");
        let mut kept = RolePolicy {
            project: project.to_owned(),
            role: role.to_owned(),
            lines: Vec::new(),
            rules: Vec::new(),
        };
        for (index, line) in policies.iter().enumerate() {
            let Ok(Some(Line::Permission(rule))) = parse_line(line, index + 1) else {
                continue;
            };
            let within = rule.object.glob().glob().starts_with(&inside);
            if rule.subject == subject && (within || rule.effect == Effect::Deny) {
                kept.lines.push(line.trim().to_owned());
                kept.rules.push(*rule);
            }
        }
        kept
    }

    /// The project.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The role.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The policy lines that count (see the type's docs), as written.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// One line of a policy.
enum Line {
    /// `p, SUBJECT, RESOURCE, ACTION, OBJECT, EFFECT`.
    Permission(Box<Rule>),
    /// `g, SUBJECT, ROLE`.
    Role { subject: String, role: String },
}

/// Parses line number `line` (1-based) of a policy; `None` for a blank or comment line.
fn parse_line(raw: &str, line: usize) -> Result<Option<Line>, PolicyError> {
    let text = raw.split('#').next().unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let error = |problem: String| PolicyError { line, problem };
    match fields[0] {
        "p" => {
            let [_, subject, resource, action, object, effect] = fields[..] else {
                return Err(error(format!(
                    "a `p` line has 6 fields (`p, SUBJECT, RESOURCE, ACTION, OBJECT, allow|deny`), this one has {}",
                    fields.len()
                )));
            };
            if subject.is_empty() || action.is_empty() || object.is_empty() {
                return Err(error("subject, action and object must not be empty".into()));
            }
            if !resource.contains(['*', '?']) && !RESOURCES.contains(&resource) {
                return Err(error(format!(
                    "unknown resource {resource:?}; use one of {}",
                    RESOURCES.join(", ")
                )));
            }
            let effect = match effect {
                "allow" => Effect::Allow,
                "deny" => Effect::Deny,
                other => {
                    return Err(error(format!(
                        "the effect is `allow` or `deny`, not {other:?}"
                    )));
                }
            };
            Ok(Some(Line::Permission(Box::new(Rule {
                subject: subject.to_owned(),
                resource: glob(resource).map_err(&error)?,
                action: glob(action).map_err(&error)?,
                object: glob(object).map_err(&error)?,
                effect,
            }))))
        }
        "g" => {
            let [_, subject, role] = fields[..] else {
                return Err(error(format!(
                    "a `g` line has 3 fields (`g, SUBJECT, ROLE`), this one has {}",
                    fields.len()
                )));
            };
            if subject.is_empty() || role.is_empty() {
                return Err(error("subject and role must not be empty".into()));
            }
            Ok(Some(Line::Role {
                subject: subject.to_owned(),
                role: role.to_owned(),
            }))
        }
        other => Err(error(format!(
            "a line starts with `p` (a permission) or `g` (a role assignment), not {other:?}"
        ))),
    }
}

/// A glob where `*` also matches `/` (Argo CD's object patterns span `project/app`).
fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("{pattern:?} is not a valid pattern: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEAM_POLICY: &str = "\
# The team-a developers run their project; one app is off limits.
p, role:team-a, applications, *, team-a/*, allow
p, role:team-a, applications, delete, team-a/payments, deny
p, role:team-a, logs, get, team-a/*, allow
g, team-a-devs, role:team-a
# A release bot syncs everything, and nothing else.
p, release-bot, applications, sync, */*, allow
# Auditors read clusters only (and what policy.default gives everyone).
p, role:auditor, clusters, get, *, allow
g, auditors, role:auditor
g, role:auditor, role:nothing-more
";

    fn policy(default: Option<&str>) -> Policy {
        Policy::parse(TEAM_POLICY, default).expect("parses")
    }

    fn dev() -> Subject {
        Subject {
            user: "alice@example.com".into(),
            groups: vec!["team-a-devs".into()],
        }
    }

    /// Subjects × resources × actions × objects, with the expected verdict.
    #[test]
    fn the_matrix() {
        let p = policy(None);
        let admin = Subject::user("admin");
        let bot = Subject::user("release-bot");
        let auditor = Subject {
            user: "eve".into(),
            groups: vec!["auditors".into()],
        };
        let nobody = Subject::user("mallory");
        let cases: &[(&Subject, &str, &str, &str, bool)] = &[
            // The built-in admin account can do anything.
            (&admin, "applications", "delete", "team-b/web", true),
            (
                &admin,
                "clusters",
                "create",
                "https://k8s.example.com",
                true,
            ),
            (&admin, "exec", "create", "team-a/web", true),
            (&admin, "accounts", "update", "alice", true),
            // The team: its own project, every action, except the denied one.
            (&dev(), "applications", "get", "team-a/web", true),
            (&dev(), "applications", "sync", "team-a/web", true),
            (
                &dev(),
                "applications",
                "action/apps/Deployment/restart",
                "team-a/web",
                true,
            ),
            (&dev(), "applications", "delete", "team-a/web", true),
            (&dev(), "applications", "delete", "team-a/payments", false),
            (&dev(), "applications", "sync", "team-a/payments", true),
            (&dev(), "applications", "get", "team-a/ns-1/web", true),
            (&dev(), "logs", "get", "team-a/web", true),
            (&dev(), "applications", "get", "team-b/web", false),
            (&dev(), "clusters", "get", "https://k8s.example.com", false),
            (&dev(), "exec", "create", "team-a/web", false),
            // The bot: sync anywhere, nothing else.
            (&bot, "applications", "sync", "team-b/web", true),
            (&bot, "applications", "get", "team-b/web", false),
            (&bot, "applications", "delete", "team-b/web", false),
            // Auditors through a group and a role chain.
            (&auditor, "clusters", "get", "https://k8s.example.com", true),
            (
                &auditor,
                "clusters",
                "delete",
                "https://k8s.example.com",
                false,
            ),
            (&auditor, "applications", "get", "team-a/web", false),
            // Anyone else: nothing.
            (&nobody, "applications", "get", "team-a/web", false),
            (&nobody, "projects", "get", "team-a", false),
        ];
        for (who, resource, action, object, expected) in cases {
            assert_eq!(
                p.enforce(who, resource, action, object),
                *expected,
                "{who:?} {action} {resource} {object}"
            );
        }
    }

    #[test]
    fn policy_default_applies_to_everyone_but_deny_still_wins() {
        let p = Policy::parse(
            "p, mallory, applications, get, secret/*, deny\n",
            Some("role:readonly"),
        )
        .expect("parses");
        let mallory = Subject::user("mallory");
        assert!(p.enforce(&mallory, "applications", "get", "team-a/web"));
        assert!(p.enforce(&mallory, "projects", "get", "team-a"));
        assert!(!p.enforce(&mallory, "applications", "get", "secret/keys"));
        assert!(!p.enforce(&mallory, "applications", "sync", "team-a/web"));
        assert!(!p.enforce(&mallory, "exec", "create", "team-a/web"));
    }

    #[test]
    fn role_cycles_end() {
        let p = Policy::parse(
            "g, role:a, role:b\ng, role:b, role:a\np, role:b, projects, get, *, allow\ng, bob, role:a\n",
            None,
        )
        .expect("parses");
        assert!(p.enforce(&Subject::user("bob"), "projects", "get", "x"));
        assert!(p.subjects_of(&Subject::user("bob")).contains("role:b"));
    }

    #[test]
    fn malformed_lines_are_refused_with_their_line_and_the_fix() {
        for (csv, line, needle) in [
            ("p, role:x, applications, get, */*", 1, "6 fields"),
            (
                "\n\np, role:x, aplications, get, */*, allow",
                3,
                "unknown resource",
            ),
            (
                "p, role:x, applications, get, */*, maybe",
                1,
                "`allow` or `deny`",
            ),
            ("g, alice", 1, "3 fields"),
            ("x, alice, role:y", 1, "starts with `p`"),
            (
                "p, role:x, applications, get, [unclosed, allow",
                1,
                "not a valid pattern",
            ),
            ("p, , applications, get, */*, allow", 1, "must not be empty"),
        ] {
            let err = Policy::parse(csv, None).expect_err(csv);
            assert_eq!(err.line, line, "{csv}: {err}");
            assert!(err.to_string().contains(needle), "{csv}: {err}");
        }
    }

    #[test]
    fn a_project_role_grants_only_within_its_project() {
        let global =
            Policy::parse("p, proj:team-a:ci, clusters, get, *, allow\n", None).expect("parses");
        let lines: Vec<String> = [
            "p, proj:team-a:ci, applications, sync, team-a/*, allow",
            "p, proj:team-a:ci, applications, get, team-a/*, allow",
            "p, proj:team-a:ci, applications, get, team-a/secret, deny",
            // Outside the project, or for another subject: grant nothing.
            "p, proj:team-a:ci, applications, *, */*, allow",
            "p, proj:team-a:ci, applications, delete, team-b/*, allow",
            "p, proj:team-a:ci, applications, delete, team-a*, allow",
            "p, proj:team-b:ci, applications, delete, team-a/*, allow",
            "p, role:admin, applications, delete, team-a/*, allow",
            // Malformed: ignored.
            "p, proj:team-a:ci, applications, sync",
        ]
        .map(str::to_owned)
        .to_vec();
        let role = Arc::new(RolePolicy::new("team-a", "ci", &lines));
        assert_eq!(role.lines().len(), 3, "{:?}", role.lines());
        let roles = [role.clone()];
        let who = Subject::user(project_role_subject("team-a", "ci"));
        let can = |resource: &str, action: &str, object: &str| {
            global.enforce_with(&who, &roles, resource, action, object)
        };
        assert!(can("applications", "sync", "team-a/web"));
        assert!(can("applications", "get", "team-a/ns/web"));
        assert!(!can("applications", "get", "team-a/secret"));
        assert!(!can("applications", "delete", "team-a/web"));
        assert!(!can("applications", "sync", "team-b/web"));
        assert!(!can("applications", "get", "team-ab/web"));
        // The global policy still applies to the role's subject.
        assert!(can("clusters", "get", "https://k8s"));
        // Without the role's lines, only the global policy.
        assert!(!global.enforce(&who, "applications", "sync", "team-a/web"));
        assert_eq!(
            parse_project_role_subject("proj:team-a:ci"),
            Some(("team-a", "ci"))
        );
        for other in ["admin", "proj:team-a", "proj::ci", "proj:a:b:c", "proj:a:"] {
            assert_eq!(parse_project_role_subject(other), None, "{other}");
        }
    }

    #[test]
    fn comments_and_spacing_do_not_matter() {
        let p = Policy::parse(
            "  # a comment\n\np,carol ,  applications,get,team-a/* , allow # trailing\n",
            None,
        )
        .expect("parses");
        assert!(p.enforce(&Subject::user("carol"), "applications", "get", "team-a/web"));
    }
}
