//! Malformed input gets a precise error (message, field path, line and column), never a
//! panic.

use capstan_model::*;

const HEAD: &str = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: app\n";

fn app_err(rest: &str) -> ParseError {
    parse_application_yaml(&format!("{HEAD}{rest}")).expect_err("input is malformed")
}

#[track_caller]
fn check(err: &ParseError, path: &str, line: u64, column: u64, message: &str) {
    assert_eq!(
        err.path().map(ToString::to_string).as_deref(),
        Some(path),
        "{err}"
    );
    assert_eq!(err.location(), Some(Location { line, column }), "{err}");
    assert_eq!(err.message(), message, "{err}");
}

#[test]
fn a_misspelt_field_is_rejected_with_a_suggestion() {
    let err = app_err("spec:\n  syncpolicy:\n    automated: {}\n");
    check(
        &err,
        "spec.syncpolicy",
        6,
        3,
        "unknown field `syncpolicy`; did you mean `syncPolicy`?",
    );
    assert_eq!(
        err.to_string(),
        "line 6, column 3: spec.syncpolicy: unknown field `syncpolicy`; did you mean `syncPolicy`?"
    );
    let err = app_err("spec:\n  source:\n    repoUrl: https://github.com/acme/a.git\n");
    check(
        &err,
        "spec.source.repoUrl",
        7,
        5,
        "unknown field `repoUrl`; did you mean `repoURL`?",
    );
    let err = app_err(
        "spec:\n  sources:\n    - repoURL: x\n      helm:\n        parameters:\n          - name: a\n            valeu: b\n",
    );
    check(
        &err,
        "spec.sources[0].helm.parameters[0].valeu",
        11,
        13,
        "unknown field `valeu`; did you mean `value`?",
    );
}

#[test]
fn an_unknown_field_without_a_close_match_lists_the_known_ones() {
    let err = app_err("spec:\n  destination:\n    cluster: prod\n");
    check(
        &err,
        "spec.destination.cluster",
        7,
        5,
        "unknown field `cluster`; remove it or use one of `server`, `namespace`, `name`",
    );
}

#[test]
fn wrong_types_say_what_was_expected_and_how_to_fix_it() {
    let err = app_err("spec:\n  source:\n    repoURL: https://a\n    targetRevision: 1.10\n");
    check(
        &err,
        "spec.source.targetRevision",
        8,
        21,
        "expected text, found the number `1.1`; put the value in quotes to keep it as text",
    );
    let err = app_err("spec:\n  revisionHistoryLimit: \"10\"\n");
    check(
        &err,
        "spec.revisionHistoryLimit",
        6,
        25,
        "expected a whole number, found the text \"10\"; remove the quotes",
    );
    let err = app_err("spec:\n  syncPolicy:\n    automated:\n      prune: maybe\n");
    check(
        &err,
        "spec.syncPolicy.automated.prune",
        8,
        14,
        "expected `true` or `false`, found the text \"maybe\"; write `true` or `false` without quotes",
    );
    let err = app_err("spec:\n  syncPolicy:\n    syncOptions: CreateNamespace=true\n");
    check(
        &err,
        "spec.syncPolicy.syncOptions",
        7,
        18,
        "expected a list, found the text \"CreateNamespace=true\"; write each item on its own line, starting with `- `",
    );
    let err = app_err("spec:\n  destination: [a, b]\n");
    check(
        &err,
        "spec.destination",
        6,
        16,
        "expected a mapping, found a list",
    );
    let err = app_err("metadata2: {}\n");
    assert_eq!(
        err.path().map(ToString::to_string).as_deref(),
        Some("metadata2")
    );
    let err = app_err(
        "spec:\n  source:\n    repoURL: x\n    kustomize:\n      replicas:\n        - name: a\n          count: true\n",
    );
    check(
        &err,
        "spec.source.kustomize.replicas[0].count",
        11,
        18,
        "expected a whole number or text, found the boolean `true`",
    );
    // YAML 1.1, as Kubernetes reads it: `yes` is a boolean, so it is not text.
    let err = app_err("spec:\n  project: yes\n");
    check(
        &err,
        "spec.project",
        6,
        12,
        "expected text, found the boolean `true`; put the value in quotes to keep it as text",
    );
}

#[test]
fn unknown_enum_values_suggest_the_closest() {
    let err = parse_app_project_yaml(
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: p\nspec:\n  syncWindows:\n    - kind: alow\n",
    )
    .expect_err("invalid");
    check(
        &err,
        "spec.syncWindows[0].kind",
        7,
        13,
        "unknown value \"alow\"; did you mean `allow`?",
    );
    let err = parse_repository_yaml(
        "apiVersion: capstan.dev/v1alpha1\nkind: Repository\nmetadata:\n  name: r\nspec:\n  url: x\n  type: svn\n",
    )
    .expect_err("invalid");
    check(
        &err,
        "spec.type",
        7,
        9,
        "unknown value \"svn\"; use one of `git`, `helm`, `oci`",
    );
    let err = app_err("spec: {}\nstatus:\n  health:\n    status: healthy\n");
    check(
        &err,
        "status.health.status",
        8,
        13,
        "unknown value \"healthy\"; did you mean `Healthy`?",
    );
}

#[test]
fn api_version_and_kind_problems() {
    let parse = |y: &str| parse_object_yaml(y).expect_err("invalid");
    let err = parse("kind: Application\nmetadata: {name: a}\n");
    check(
        &err,
        "apiVersion",
        1,
        1,
        "required field is missing; add `apiVersion: capstan.dev/v1alpha1`",
    );
    let err = parse("apiVersion: argoproj.io/v1alpha1\nmetadata: {name: a}\n");
    check(
        &err,
        "kind",
        1,
        1,
        "required field is missing; add `kind:` with one of `Application`, `AppProject`, `Cluster`, `Repository`",
    );
    let err = parse("apiVersion: argoproj.io/v1alpha1\nkind: application\n");
    check(
        &err,
        "kind",
        2,
        7,
        "unknown kind \"application\"; did you mean `Application`?",
    );
    let err = parse("apiVersion: argoproj.io/v1beta1\nkind: Application\n");
    check(
        &err,
        "apiVersion",
        1,
        13,
        "unsupported apiVersion \"argoproj.io/v1beta1\"; did you mean `argoproj.io/v1alpha1`?",
    );
    let err = parse("apiVersion: apps/v1\nkind: Deployment\n");
    check(
        &err,
        "kind",
        2,
        7,
        "Deployment (apps/v1) is not an object Capstan reads; use Application or AppProject (capstan.dev/v1alpha1 or argoproj.io/v1alpha1), Cluster or Repository (capstan.dev/v1alpha1)",
    );
    let err = parse("apiVersion: capstan.dev/v1alpha1\nkind: Deployment\n");
    check(
        &err,
        "kind",
        2,
        7,
        "unknown kind \"Deployment\"; use one of `Application`, `AppProject`, `Cluster`, `Repository`",
    );
    let err = parse("apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\n");
    check(
        &err,
        "kind",
        2,
        7,
        "ApplicationSet is not supported yet; generate the Applications and import those",
    );
    let err = parse("apiVersion: argoproj.io/v1alpha1\nkind: Repository\n");
    assert_eq!(
        err.path().map(ToString::to_string).as_deref(),
        Some("apiVersion")
    );
    assert!(
        err.message()
            .starts_with("Repository is a Capstan kind; set apiVersion to capstan.dev/v1alpha1"),
        "{err}"
    );
    let err = parse("- just\n- a list\n");
    check(
        &err,
        "(document root)",
        1,
        1,
        "expected an object (a mapping with apiVersion, kind, metadata and spec), found a list",
    );
    let err = parse_application_yaml(
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: p}\n",
    )
    .expect_err("wrong kind");
    assert!(
        matches!(
            err,
            ParseError::WrongKind {
                expected: "Application",
                found: "AppProject",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.location(), Some(Location { line: 2, column: 7 }));
}

#[test]
fn empty_and_multiple_documents() {
    assert_eq!(parse_application_yaml(""), Err(ParseError::Empty));
    assert_eq!(
        parse_application_yaml("# just a comment\n---\n...\n"),
        Err(ParseError::Empty)
    );
    let two = format!("{HEAD}---\n{HEAD}");
    assert_eq!(
        parse_application_yaml(&two),
        Err(ParseError::MultipleDocuments { count: 2 })
    );
    assert_eq!(parse_objects_yaml("").map(|v| v.len()), Ok(0));
    let err = parse_objects_yaml(&format!("{HEAD}---\n{HEAD}spec:\n  projcet: x\n"))
        .expect_err("invalid");
    assert_eq!(err.document(), Some(2));
    assert_eq!(
        err.to_string(),
        "document 2: line 11, column 3: spec.projcet: unknown field `projcet`; did you mean `project`?"
    );
}

#[test]
fn yaml_syntax_errors_have_locations() {
    let err = parse_application_yaml("apiVersion: argoproj.io/v1alpha1\nkind: [Application\n")
        .expect_err("invalid");
    assert!(matches!(err, ParseError::Syntax { .. }), "{err:?}");
    assert_eq!(err.location().map(|l| l.line), Some(2));
    assert!(err.message().starts_with("invalid YAML: "), "{err}");
    let err = parse_application_yaml("a:\n b: 1\n  c: 2\n").expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "line 3, column 4: invalid YAML: mapping values are not allowed in this context"
    );
    let err =
        parse_application_yaml(&format!("{HEAD}spec: {{}}\nspec: {{}}\n")).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "line 6, column 1: duplicate key `spec`; each key may appear once in a mapping, remove one"
    );
    let err = parse_application_yaml("key: \"unterminated\n").expect_err("invalid");
    assert!(matches!(err, ParseError::Syntax { .. }), "{err:?}");
    let err = parse_application_yaml("key: !custom value\n").expect_err("invalid");
    assert!(
        err.message().contains("unsupported YAML tag `!custom`"),
        "{err}"
    );
    let err = parse_application_yaml("key: .inf\n").expect_err("invalid");
    assert!(err.message().contains("cannot be stored as JSON"), "{err}");
}

#[test]
fn absurd_sizes_are_refused() {
    let big = format!(
        "{HEAD}spec:\n  info:\n{}",
        "    - {name: a, value: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx}\n"
            .repeat(70_000)
    );
    assert!(big.len() > MAX_DOCUMENT_BYTES);
    let err = parse_application_yaml(&big).expect_err("too large");
    assert!(
        matches!(
            err,
            ParseError::TooLarge {
                limit: MAX_DOCUMENT_BYTES,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("split it into smaller documents"),
        "{err}"
    );
    // In a stream, each document is bounded too.
    let stream = format!("{HEAD}---\n{big}");
    let err = parse_objects_yaml(&stream).expect_err("too large");
    assert_eq!(err.document(), Some(2), "{err}");
    assert!(
        matches!(err, ParseError::InDocument { ref source, .. } if matches!(**source, ParseError::TooLarge { .. }))
    );
}

#[test]
fn alias_bombs_and_deep_nesting_are_refused() {
    let mut bomb = String::from("a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        bomb.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 10].join(",")
        ));
    }
    let err = parse_object_yaml(&bomb).expect_err("bomb");
    assert!(matches!(err, ParseError::Syntax { .. }), "{err:?}");

    let deep_flow = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        parse_object_yaml(&deep_flow),
        Err(ParseError::Syntax { .. })
    ));
    let deep_block: String = (0..(MAX_DEPTH + 5))
        .map(|i| format!("{}k:\n", "  ".repeat(i)))
        .collect();
    let err = parse_object_yaml(&deep_block).expect_err("too deep");
    assert_eq!(
        err.message(),
        "the YAML is too large or too complex: lists and mappings nest deeper than 64 levels; simplify it or split it into smaller documents"
    );
    let err = parse_object_yaml(&bomb).expect_err("bomb");
    assert!(
        err.message().starts_with("aliases expand to more than"),
        "{err}"
    );

    // Nesting up to the limit is fine, even on a small (1 MiB) thread stack.
    let handle = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(|| {
            let mut yaml =
                format!("{HEAD}spec:\n  source:\n    repoURL: x\n    helm:\n      valuesObject:\n");
            for i in 0..(MAX_DEPTH - 5) {
                yaml.push_str(&format!("{}k:\n", "  ".repeat(i + 4)));
            }
            parse_application_yaml(&yaml).map(|_| ())
        })
        .expect("thread starts");
    assert_eq!(handle.join().expect("no stack overflow"), Ok(()));
}

#[test]
fn json_input_errors() {
    let err = parse_object_json("{\"apiVersion\": \"capstan.dev/v1alpha1\", \"kind\": \"Application\", \"spec\": {\"sourcee\": {}}}").expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "spec.sourcee: unknown field `sourcee`; did you mean `source`?"
    );
    let err = parse_object_json("{\"apiVersion\": \"capstan.dev/v1alpha1\",\n \"kind\": }")
        .expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "line 2, column 10: invalid JSON: expected value"
    );
}

#[test]
fn null_means_unset_as_in_argo_cd() {
    let app = parse_application_yaml(&format!(
        "{HEAD}spec:\n  project:\n  syncPolicy:\n  source:\n    repoURL: https://a\n    path: ~\n    helm:\n      valueFiles:\n  destination:\n    server: https://kubernetes.default.svc\n"
    ))
    .expect("parses");
    assert_eq!(app.spec.project, "");
    assert_eq!(app.spec.sync_policy, None);
    let source = app.spec.source.expect("source");
    assert_eq!(source.path, "");
    assert_eq!(source.helm.map(|h| h.value_files.len()), Some(0));
}

#[test]
fn fragments_parse_with_paths_from_their_root() {
    let spec: ApplicationSpec =
        parse_fragment_yaml("destination:\n  server: https://x\n").expect("parses");
    assert_eq!(spec.destination.server, "https://x");
    let err = parse_fragment_yaml::<ApplicationSpec>("destination:\n  sever: https://x\n")
        .expect_err("typo");
    assert_eq!(
        err.to_string(),
        "line 2, column 3: destination.sever: unknown field `sever`; did you mean `server`?"
    );
}
