//! The OpenAPI 3 document of the REST API, served at `/api/openapi.json`. It is built from
//! [`OPERATIONS`], one entry per path and method; a test checks the table against the router
//! (every documented operation is routed, every routed path is documented), so the two
//! cannot drift apart.
//!
//! Applications are described loosely (`type: object`): their schema is Argo CD's
//! `v1alpha1.Application`, documented by Argo CD; the API accepts and returns that shape.

use serde_json::{Value, json};

/// Where an operation's parameter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum In {
    /// In the path (`{name}`).
    Path,
    /// In the query string.
    Query,
}

/// A parameter: name, place, type (`string`, `integer`, `boolean`, or `array` of strings),
/// description.
pub type Param = (&'static str, In, &'static str, &'static str);

/// One operation of the REST API.
#[derive(Clone, Copy, Debug)]
pub struct Operation {
    /// HTTP method, lower case.
    pub method: &'static str,
    /// The path template (axum's and OpenAPI's `{name}` syntax).
    pub path: &'static str,
    /// A unique id (`ApplicationService_List`, as Argo CD's swagger names them).
    pub id: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Whether a token is needed.
    pub auth: bool,
    /// Parameters.
    pub params: &'static [Param],
    /// The request body's schema name under `components.schemas`, if it takes one.
    pub body: Option<&'static str>,
}

const APP_NS: Param = (
    "appNamespace",
    In::Query,
    "string",
    "the Application's namespace (default: the control plane's)",
);
const NAME: Param = ("name", In::Path, "string", "the Application's name");
const LIST: &[Param] = &[
    ("projects", In::Query, "array", "only these projects"),
    (
        "selector",
        In::Query,
        "string",
        "label selector, e.g. env=prod,tier!=web",
    ),
    (
        "clusters",
        In::Query,
        "array",
        "only these destination servers or names",
    ),
    (
        "namespaces",
        In::Query,
        "array",
        "only these destination namespaces",
    ),
    ("health", In::Query, "array", "only these health statuses"),
    ("sync", In::Query, "array", "only these sync statuses"),
    (
        "search",
        In::Query,
        "string",
        "case-insensitive substring of the name",
    ),
    (
        "limit",
        In::Query,
        "integer",
        "page size (default 500, at most 5000)",
    ),
    (
        "continue",
        In::Query,
        "string",
        "the previous page's metadata.continue",
    ),
    (
        "fields",
        In::Query,
        "array",
        "dotted paths to keep in each item",
    ),
    APP_NS,
    (
        "repo",
        In::Query,
        "string",
        "only Applications with a source in this repository",
    ),
];

const PROJECT: Param = ("name", In::Path, "string", "the project's name");
const ROLE: Param = ("role", In::Path, "string", "the project role's name");
const REPO: Param = (
    "repo",
    In::Path,
    "string",
    "the repository's URL, percent-encoded",
);
const APP_PROJECT: Param = (
    "appProject",
    In::Query,
    "string",
    "the project the repository is registered for",
);
const FORCE_REFRESH: Param = ("forceRefresh", In::Query, "boolean", "test the connection");
const UPSERT: Param = (
    "upsert",
    In::Query,
    "boolean",
    "replace an existing one with a different spec",
);
const SERVER: Param = (
    "server",
    In::Path,
    "string",
    "the cluster's server URL, percent-encoded (its name with id.type=name)",
);
const ID_TYPE: Param = (
    "id.type",
    In::Query,
    "string",
    "server (default) or name: what the path names",
);

/// Every operation of the REST API.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/api/version",
        id: "VersionService_Version",
        summary: "The server's version",
        auth: false,
        params: &[],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/settings",
        id: "SettingsService_Get",
        summary: "What clients need before logging in: the URL and single sign-on",
        auth: false,
        params: &[],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/openapi.json",
        id: "OpenApi",
        summary: "This document",
        auth: false,
        params: &[],
        body: None,
    },
    Operation {
        method: "get",
        path: "/healthz",
        id: "Healthz",
        summary: "Liveness, for load balancers",
        auth: false,
        params: &[],
        body: None,
    },
    Operation {
        method: "post",
        path: "/api/v1/session",
        id: "SessionService_Create",
        summary: "Log in with a local account's password; answers a session token",
        auth: false,
        params: &[],
        body: Some("LoginRequest"),
    },
    Operation {
        method: "delete",
        path: "/api/v1/session",
        id: "SessionService_Delete",
        summary: "Log out: the token is revoked",
        auth: true,
        params: &[],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/session/userinfo",
        id: "SessionService_GetUserInfo",
        summary: "Who the token belongs to",
        auth: true,
        params: &[],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/account",
        id: "AccountService_ListAccounts",
        summary: "The accounts the caller may see",
        auth: true,
        params: &[],
        body: None,
    },
    Operation {
        method: "put",
        path: "/api/v1/account/password",
        id: "AccountService_UpdatePassword",
        summary: "Change a password (your own, or another's with accounts/update)",
        auth: true,
        params: &[],
        body: Some("PasswordChange"),
    },
    Operation {
        method: "get",
        path: "/api/v1/account/can-i/{resource}/{action}/{object}",
        id: "AccountService_CanI",
        summary: "Whether the caller may do ACTION on RESOURCE OBJECT (yes or no)",
        auth: true,
        params: &[
            (
                "resource",
                In::Path,
                "string",
                "applications, projects, ...",
            ),
            ("action", In::Path, "string", "get, create, sync, ..."),
            ("object", In::Path, "string", "PROJECT/APP, ..."),
        ],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/account/{name}",
        id: "AccountService_GetAccount",
        summary: "One account",
        auth: true,
        params: &[("name", In::Path, "string", "the account")],
        body: None,
    },
    Operation {
        method: "post",
        path: "/api/v1/account/{name}/token",
        id: "AccountService_CreateToken",
        summary: "Create an API token (shown only in this answer)",
        auth: true,
        params: &[("name", In::Path, "string", "the account")],
        body: Some("TokenRequest"),
    },
    Operation {
        method: "delete",
        path: "/api/v1/account/{name}/token/{id}",
        id: "AccountService_DeleteToken",
        summary: "Delete and revoke an API token",
        auth: true,
        params: &[
            ("name", In::Path, "string", "the account"),
            ("id", In::Path, "string", "the token's id"),
        ],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/applications",
        id: "ApplicationService_List",
        summary: "A page of the Applications the caller may see",
        auth: true,
        params: LIST,
        body: None,
    },
    Operation {
        method: "post",
        path: "/api/v1/applications",
        id: "ApplicationService_Create",
        summary: "Create an Application (Capstan or Argo CD JSON)",
        auth: true,
        params: &[(
            "upsert",
            In::Query,
            "boolean",
            "replace an existing one with a different spec",
        )],
        body: Some("Application"),
    },
    Operation {
        method: "get",
        path: "/api/v1/applications/{name}",
        id: "ApplicationService_Get",
        summary: "One Application; refresh=normal|hard asks the controller to refresh it",
        auth: true,
        params: &[
            NAME,
            APP_NS,
            ("refresh", In::Query, "string", "normal or hard"),
        ],
        body: None,
    },
    Operation {
        method: "put",
        path: "/api/v1/applications/{name}",
        id: "ApplicationService_Update",
        summary: "Replace an Application's spec, labels, annotations and finalizers",
        auth: true,
        params: &[NAME],
        body: Some("Application"),
    },
    Operation {
        method: "patch",
        path: "/api/v1/applications/{name}",
        id: "ApplicationService_Patch",
        summary: "Patch an Application (merge or json patch)",
        auth: true,
        params: &[NAME],
        body: Some("ApplicationPatchRequest"),
    },
    Operation {
        method: "delete",
        path: "/api/v1/applications/{name}",
        id: "ApplicationService_Delete",
        summary: "Delete an Application, with its resources unless cascade=false",
        auth: true,
        params: &[
            NAME,
            APP_NS,
            (
                "cascade",
                In::Query,
                "boolean",
                "delete the resources too (default true)",
            ),
            (
                "propagationPolicy",
                In::Query,
                "string",
                "foreground (default) or background",
            ),
        ],
        body: None,
    },
    Operation {
        method: "post",
        path: "/api/v1/applications/{name}/sync",
        id: "ApplicationService_Sync",
        summary: "Ask for a sync",
        auth: true,
        params: &[NAME],
        body: Some("ApplicationSyncRequest"),
    },
    Operation {
        method: "post",
        path: "/api/v1/applications/{name}/rollback",
        id: "ApplicationService_Rollback",
        summary: "Ask for a rollback to a history entry",
        auth: true,
        params: &[NAME],
        body: Some("ApplicationRollbackRequest"),
    },
    Operation {
        method: "delete",
        path: "/api/v1/applications/{name}/operation",
        id: "ApplicationService_TerminateOperation",
        summary: "Terminate the running operation",
        auth: true,
        params: &[NAME, APP_NS],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/applications/{name}/history",
        id: "ApplicationService_History",
        summary: "The deployment history",
        auth: true,
        params: &[NAME, APP_NS],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/applications/{name}/manifests",
        id: "ApplicationService_GetManifests",
        summary: "The manifests the Application renders to, at its target revision or another",
        auth: true,
        params: &[
            NAME,
            APP_NS,
            (
                "revision",
                In::Query,
                "string",
                "a revision (single-source Applications)",
            ),
        ],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/applications/{name}/managed-resources",
        id: "ApplicationService_ManagedResources",
        summary: "The resources the Application manages, desired against live, with their diffs (from the controller)",
        auth: true,
        params: &[NAME, APP_NS],
        body: None,
    },
    Operation {
        method: "post",
        path: "/api/v1/applications/{name}/diff",
        id: "ApplicationService_Diff",
        summary: "The Application's resources with the given manifests as the desired side (capstan app diff --local)",
        auth: true,
        params: &[NAME, APP_NS],
        body: Some("ApplicationDiffRequest"),
    },
    Operation {
        method: "get",
        path: "/api/v1/applications/{name}/resource-tree",
        id: "ApplicationService_ResourceTree",
        summary: "The Application's resources and what they own (ReplicaSets, Pods, ...), from the controller",
        auth: true,
        params: &[NAME, APP_NS],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/applications/{name}/events",
        id: "ApplicationService_ListResourceEvents",
        summary: "Kubernetes Events of the Application's resources (or of one), oldest first",
        auth: true,
        params: &[
            NAME,
            APP_NS,
            (
                "resourceNamespace",
                In::Query,
                "string",
                "the resource's namespace",
            ),
            (
                "resourceName",
                In::Query,
                "string",
                "the resource's name (none: every resource of the Application)",
            ),
            ("resourceUID", In::Query, "string", "the resource's uid"),
        ],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/stream/applications",
        id: "ApplicationService_Watch",
        summary: "Server-Sent Events of Application changes (resume with resourceVersion or Last-Event-ID)",
        auth: true,
        params: LIST,
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/projects",
        id: "ProjectService_List",
        summary: "The projects the caller may see",
        auth: true,
        params: &[],
        body: None,
    },
    Operation {
        method: "post",
        path: "/api/v1/projects",
        id: "ProjectService_Create",
        summary: "Create a project (upsert replaces an existing one)",
        auth: true,
        params: &[],
        body: Some("ProjectCreateRequest"),
    },
    Operation {
        method: "get",
        path: "/api/v1/projects/{name}",
        id: "ProjectService_Get",
        summary: "One project",
        auth: true,
        params: &[PROJECT],
        body: None,
    },
    Operation {
        method: "put",
        path: "/api/v1/projects/{name}",
        id: "ProjectService_Update",
        summary: "Replace a project's spec, labels and annotations (role tokens stay)",
        auth: true,
        params: &[PROJECT],
        body: Some("ProjectUpdateRequest"),
    },
    Operation {
        method: "delete",
        path: "/api/v1/projects/{name}",
        id: "ProjectService_Delete",
        summary: "Delete a project no Application uses (never default)",
        auth: true,
        params: &[PROJECT],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/projects/{name}/syncwindows",
        id: "ProjectService_GetSyncWindowsState",
        summary: "The project's sync windows",
        auth: true,
        params: &[PROJECT],
        body: None,
    },
    Operation {
        method: "post",
        path: "/api/v1/projects/{name}/roles/{role}/token",
        id: "ProjectService_CreateToken",
        summary: "Issue a token for a project role (shown only in this answer)",
        auth: true,
        params: &[PROJECT, ROLE],
        body: Some("TokenRequest"),
    },
    Operation {
        method: "delete",
        path: "/api/v1/projects/{name}/roles/{role}/token/{iat}",
        id: "ProjectService_DeleteToken",
        summary: "Delete and revoke a project role's token",
        auth: true,
        params: &[
            PROJECT,
            ROLE,
            (
                "iat",
                In::Path,
                "integer",
                "the token's issue time, as listed in the role's jwtTokens",
            ),
            ("id", In::Query, "string", "only the token with this id"),
        ],
        body: None,
    },
    Operation {
        method: "get",
        path: "/api/v1/repositories",
        id: "RepositoryService_ListRepositories",
        summary: "The repositories the caller may see (never their credentials)",
        auth: true,
        params: &[FORCE_REFRESH],
        body: None,
    },
    Operation {
        method: "post",
        path: "/api/v1/repositories",
        id: "RepositoryService_CreateRepository",
        summary: "Register a repository (upsert replaces the one registered for the URL)",
        auth: true,
        params: &[UPSERT],
        body: Some("Repository"),
    },
    Operation {
        method: "get",
        path: "/api/v1/repositories/{repo}",
        id: "RepositoryService_Get",
        summary: "One repository; forceRefresh=true tests its connection",
        auth: true,
        params: &[REPO, APP_PROJECT, FORCE_REFRESH],
        body: None,
    },
    Operation {
        method: "put",
        path: "/api/v1/repositories/{repo}",
        id: "RepositoryService_UpdateRepository",
        summary: "Replace a repository (empty credentials keep the stored ones)",
        auth: true,
        params: &[REPO],
        body: Some("Repository"),
    },
    Operation {
        method: "delete",
        path: "/api/v1/repositories/{repo}",
        id: "RepositoryService_DeleteRepository",
        summary: "Unregister a repository",
        auth: true,
        params: &[REPO, APP_PROJECT],
        body: None,
    },
    Operation {
        method: "post",
        path: "/api/v1/repositories/{repo}/validate",
        id: "RepositoryService_ValidateAccess",
        summary: "Test the connection to a repository (registered or not)",
        auth: true,
        params: &[REPO, APP_PROJECT],
        body: Some("RepoAccessQuery"),
    },
    Operation {
        method: "get",
        path: "/api/v1/clusters",
        id: "ClusterService_List",
        summary: "The clusters the caller may see, with their connection state (never their credentials)",
        auth: true,
        params: &[],
        body: None,
    },
    Operation {
        method: "post",
        path: "/api/v1/clusters",
        id: "ClusterService_Create",
        summary: "Register a cluster (upsert replaces the one registered for the server)",
        auth: true,
        params: &[UPSERT],
        body: Some("Cluster"),
    },
    Operation {
        method: "get",
        path: "/api/v1/clusters/{server}",
        id: "ClusterService_Get",
        summary: "One cluster, with its connection state",
        auth: true,
        params: &[SERVER, ID_TYPE],
        body: None,
    },
    Operation {
        method: "put",
        path: "/api/v1/clusters/{server}",
        id: "ClusterService_Update",
        summary: "Replace a cluster (empty credentials keep the stored ones)",
        auth: true,
        params: &[SERVER, ID_TYPE],
        body: Some("Cluster"),
    },
    Operation {
        method: "delete",
        path: "/api/v1/clusters/{server}",
        id: "ClusterService_Delete",
        summary: "Unregister a cluster",
        auth: true,
        params: &[SERVER, ID_TYPE],
        body: None,
    },
    Operation {
        method: "get",
        path: "/auth/login",
        id: "Sso_Login",
        summary: "Single sign-on: redirects the browser to the OpenID Connect provider",
        auth: false,
        params: &[(
            "return_url",
            In::Query,
            "string",
            "a path of this server to come back to",
        )],
        body: None,
    },
    Operation {
        method: "get",
        path: "/auth/callback",
        id: "Sso_Callback",
        summary: "Single sign-on: the provider's redirect back; sets the session cookie",
        auth: false,
        params: &[
            ("code", In::Query, "string", "the authorization code"),
            ("state", In::Query, "string", "the state sent"),
        ],
        body: None,
    },
    Operation {
        method: "post",
        path: "/auth/token",
        id: "Sso_Token",
        summary: "Exchanges an ID token from the provider for a Capstan session token (the CLI)",
        auth: false,
        params: &[],
        body: Some("IdTokenExchange"),
    },
    Operation {
        method: "post",
        path: "/api/webhook",
        id: "Webhook",
        summary: "Git push deliveries from GitHub, GitLab, Gitea and Bitbucket (authenticated by their signatures)",
        auth: false,
        params: &[],
        body: Some("WebhookPayload"),
    },
];

fn schemas() -> Value {
    let string = json!({"type": "string"});
    json!({
        "Error": {"type": "object", "properties": {
            "error": string, "message": string, "code": {"type": "integer"}}},
        "Application": {"type": "object",
            "description": "An Application in Argo CD's argoproj.io/v1alpha1 shape",
            "required": ["metadata", "spec"],
            "properties": {"apiVersion": string, "kind": string,
                "metadata": {"type": "object"}, "spec": {"type": "object"}},
            "example": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "guestbook"},
                "spec": {"project": "default",
                    "source": {"repoURL": "https://github.com/argoproj/argocd-example-apps.git",
                        "path": "guestbook", "targetRevision": "HEAD"},
                    "destination": {"server": "https://kubernetes.default.svc",
                        "namespace": "guestbook"}}}},
        "LoginRequest": {"type": "object", "required": ["username", "password"],
            "properties": {"username": string, "password": string}},
        "PasswordChange": {"type": "object", "required": ["currentPassword", "newPassword"],
            "properties": {"name": string, "currentPassword": string, "newPassword": string}},
        "TokenRequest": {"type": "object", "properties": {
            "id": string, "expiresIn": {"type": "integer", "description": "seconds; 0: never"}}},
        "ApplicationPatchRequest": {"type": "object", "required": ["patch"], "properties": {
            "patch": string, "patchType": {"type": "string", "enum": ["merge", "json"]},
            "appNamespace": string}},
        "ApplicationSyncRequest": {"type": "object", "properties": {
            "appNamespace": string, "revision": string,
            "revisions": {"type": "array", "items": string},
            "prune": {"type": "boolean"}, "dryRun": {"type": "boolean"},
            "strategy": {"type": "object"},
            "resources": {"type": "array", "items": {"type": "object", "properties": {
                "group": string, "kind": string, "name": string, "namespace": string}}},
            "syncOptions": {"type": "object", "properties": {"items": {"type": "array", "items": string}}},
            "retryStrategy": {"type": "object", "properties": {"limit": {"type": "integer"}}}}},
        "ApplicationRollbackRequest": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "integer"}, "prune": {"type": "boolean"}, "dryRun": {"type": "boolean"},
            "appNamespace": string}},
        "ApplicationDiffRequest": {"type": "object", "properties": {
            "appNamespace": string,
            "manifests": {"type": "array", "items": string,
                "description": "each manifest one JSON object's text (at most 8 MiB in all)"}},
            "example": {"manifests": [
                "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"settings\"},\"data\":{\"color\":\"blue\"}}"]}},
        "WebhookPayload": {"type": "object", "description": "the Git host's push payload"},
        "IdTokenExchange": {"type": "object", "required": ["idToken"],
            "properties": {"idToken": string}},
        "AppProject": {"type": "object",
            "description": "An AppProject in Argo CD's argoproj.io/v1alpha1 shape (apiVersion and kind may be left out)",
            "required": ["metadata"],
            "properties": {"apiVersion": string, "kind": string,
                "metadata": {"type": "object"}, "spec": {"type": "object"}},
            "example": {"metadata": {"name": "team-a"},
                "spec": {"sourceRepos": ["*"],
                    "destinations": [{"server": "*", "namespace": "team-a"}],
                    "roles": [{"name": "ci",
                        "policies": ["p, proj:team-a:ci, applications, sync, team-a/*, allow"]}]}}},
        "ProjectCreateRequest": {"type": "object", "required": ["project"], "properties": {
            "project": {"$ref": "#/components/schemas/AppProject"},
            "upsert": {"type": "boolean"}}},
        "ProjectUpdateRequest": {"type": "object", "required": ["project"], "properties": {
            "project": {"$ref": "#/components/schemas/AppProject"}}},
        "Repository": {"type": "object",
            "description": "A Repository (capstan.dev/v1alpha1; apiVersion and kind may be left out); credentials are accepted, never answered",
            "required": ["spec"],
            "properties": {"apiVersion": string, "kind": string,
                "metadata": {"type": "object"}, "spec": {"type": "object"}},
            "example": {"spec": {"url": "https://github.com/argoproj/argocd-example-apps.git",
                "username": "git", "password": "a-token"}}},
        "RepoAccessQuery": {"type": "object",
            "description": "credentials to test with instead of the registered ones",
            "properties": {"username": string, "password": string, "bearerToken": string,
                "project": string}},
        "Cluster": {"type": "object",
            "description": "A Cluster (capstan.dev/v1alpha1; apiVersion and kind may be left out); credentials are accepted, never answered",
            "required": ["spec"],
            "properties": {"apiVersion": string, "kind": string,
                "metadata": {"type": "object"}, "spec": {"type": "object"}},
            "example": {"metadata": {"name": "prod"},
                "spec": {"server": "https://10.0.0.1:6443",
                    "config": {"bearerToken": "a-token",
                        "tlsClientConfig": {"insecure": true}}}}},
    })
}

fn parameter(&(name, place, kind, description): &Param) -> Value {
    let schema = match kind {
        "array" => json!({"type": "array", "items": {"type": "string"}}),
        other => json!({"type": other}),
    };
    json!({
        "name": name,
        "in": match place { In::Path => "path", In::Query => "query" },
        "required": place == In::Path,
        "description": description,
        "schema": schema,
        "style": "form",
        "explode": true,
    })
}

/// The OpenAPI document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for op in OPERATIONS {
        let mut operation = json!({
            "operationId": op.id,
            "summary": op.summary,
            "parameters": op.params.iter().map(parameter).collect::<Vec<_>>(),
            "responses": {
                "200": {"description": "done", "content": {"application/json": {"schema": {"type": "object"}}}},
                "default": {"description": "an error", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if let Some(body) = op.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{body}")}}}});
        }
        if !op.auth {
            operation["security"] = json!([]);
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Capstan API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Capstan's REST API: Argo CD's paths and JSON shapes. The same methods are served over gRPC (proto/capstan/api/v1/api.proto) on the same port.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    })
}
