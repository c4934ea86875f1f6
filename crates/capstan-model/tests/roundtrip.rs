//! Argo CD YAML, written the way users and the Argo CD controller write it, parses into the
//! model and comes back out without loss.

mod common;

use capstan_model::*;
use common::{assert_round_trip, keys, yaml_value};

const GUESTBOOK: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: guestbook
  namespace: argocd
spec:
  project: default
  source:
    repoURL: https://github.com/argoproj/argocd-example-apps.git
    targetRevision: HEAD
    path: guestbook
  destination:
    server: https://kubernetes.default.svc
    namespace: guestbook
"#;

const HELM: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: ingress-nginx
  namespace: argocd
  labels:
    team: platform
    app.kubernetes.io/part-of: edge
  annotations:
    notifications.argoproj.io/subscribe.on-sync-failed.slack: platform-alerts
  finalizers:
    - resources-finalizer.argocd.argoproj.io
spec:
  project: platform
  source:
    repoURL: https://kubernetes.github.io/ingress-nginx
    chart: ingress-nginx
    targetRevision: 4.11.2
    helm:
      releaseName: ingress
      valueFiles:
        - values-prod.yaml
      parameters:
        - name: controller.replicaCount
          value: "3"
        - name: controller.image.tag
          value: "1.11.2"
          forceString: true
      fileParameters:
        - name: controller.config.custom-template
          path: files/template.tmpl
      valuesObject:
        controller:
          replicaCount: 2
          service:
            type: LoadBalancer
            annotations:
              service.beta.kubernetes.io/aws-load-balancer-type: nlb
          resources:
            requests: {cpu: 100m, memory: 90Mi}
          extraArgs: [--enable-ssl-passthrough]
          metrics:
            enabled: true
            port: 10254
            scrapeInterval: 30s
        defaultBackend:
          enabled: false
        tcp: {}
        nullable: null
        ratio: 0.25
      passCredentials: false
      skipCrds: true
      skipSchemaValidation: true
      skipTests: true
      ignoreMissingValueFiles: true
      kubeVersion: "1.30"
      apiVersions:
        - monitoring.coreos.com/v1/ServiceMonitor
      namespace: ingress-nginx
      version: v3
  destination:
    name: prod-eu-1
    namespace: ingress-nginx
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
      - CreateNamespace=true
      - ServerSideApply=true
"#;

const KUSTOMIZE: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: shop-staging
  namespace: argocd
spec:
  project: shop
  source:
    repoURL: git@github.com:acme/shop-deploy.git
    targetRevision: main
    path: overlays/staging
    kustomize:
      version: v5.4.3
      namePrefix: staging-
      nameSuffix: -v2
      namespace: shop-staging
      commonLabels:
        env: staging
        app.kubernetes.io/managed-by: capstan
      commonAnnotations:
        owner: team-shop
        build: ${ARGOCD_APP_REVISION}
      commonAnnotationsEnvsubst: true
      forceCommonLabels: true
      forceCommonAnnotations: true
      labelWithoutSelector: true
      labelIncludeTemplates: true
      images:
        - ghcr.io/acme/shop-api:1.4.2
        - frontend=ghcr.io/acme/shop-web@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      replicas:
        - name: shop-api
          count: 3
        - name: shop-worker
          count: "2"
      patches:
        - target:
            kind: Deployment
            name: shop-api
          patch: |-
            - op: replace
              path: /spec/template/spec/containers/0/resources/limits/memory
              value: 512Mi
        - path: patches/hpa.yaml
          options:
            allowNameChange: true
            allowKindChange: false
        - target:
            group: apps
            version: v1
            kind: StatefulSet
            namespace: shop-staging
            labelSelector: tier=db
            annotationSelector: backup=true
          patch: |
            apiVersion: apps/v1
            kind: StatefulSet
            metadata:
              name: not-used
            spec:
              replicas: 1
      components:
        - ../../components/tracing
      ignoreMissingComponents: true
      kubeVersion: "1.30"
      apiVersions:
        - autoscaling/v2
  destination:
    server: https://10.20.0.1:6443
    namespace: shop-staging
"#;

const MULTI_SOURCE: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: prometheus
  namespace: argocd
spec:
  project: monitoring
  sources:
    - repoURL: https://prometheus-community.github.io/helm-charts
      chart: kube-prometheus-stack
      targetRevision: 65.1.0
      name: chart
      helm:
        valueFiles:
          - $values/monitoring/prometheus/values.yaml
          - $values/monitoring/prometheus/values-prod.yaml
        values: |
          prometheus:
            prometheusSpec:
              retention: 30d
    - repoURL: https://github.com/acme/platform-values.git
      targetRevision: main
      ref: values
      name: values
  destination:
    server: https://kubernetes.default.svc
    namespace: monitoring
  syncPolicy:
    syncOptions:
      - ServerSideApply=true
"#;

const PLUGIN: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: billing
  namespace: argocd
spec:
  project: default
  source:
    repoURL: https://github.com/acme/secrets-deploy.git
    path: apps/billing
    targetRevision: v1.2.0
    plugin:
      name: argocd-vault-plugin-helm
      env:
        - name: HELM_ARGS
          value: -f values-prod.yaml
        - name: AVP_TYPE
          value: vault
      parameters:
        - name: release-name
          string: billing
        - name: value-files
          array: [values.yaml, values-prod.yaml]
        - name: helm-parameters
          map:
            image.tag: v1.2.0
            replicaCount: "3"
        - name: no-extra-files
          array: []
  destination:
    server: https://kubernetes.default.svc
    namespace: billing
"#;

const FULL_SYNC_POLICY: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: payments
  namespace: argocd
  finalizers:
    - resources-finalizer.argocd.argoproj.io/background
spec:
  project: payments
  revisionHistoryLimit: 5
  info:
    - name: Runbook
      value: https://wiki.acme.io/payments/runbook
    - name: Owner
      value: payments-team@acme.io
  source:
    repoURL: https://github.com/acme/payments.git
    targetRevision: release-2024.10
    path: deploy
    directory:
      recurse: true
      include: '{*.yaml,*.yml,*.jsonnet}'
      exclude: 'tests/*'
      jsonnet:
        extVars:
          - name: env
            value: prod
          - name: replicas
            value: "3"
            code: true
        tlas:
          - name: cluster
            value: eu-1
        libs:
          - vendor
  destination:
    server: https://kubernetes.default.svc
    namespace: payments
  ignoreDifferences:
    - group: apps
      kind: Deployment
      jsonPointers:
        - /spec/replicas
    - group: admissionregistration.k8s.io
      kind: MutatingWebhookConfiguration
      name: payments-webhook
      jqPathExpressions:
        - .webhooks[]?.clientConfig.caBundle
    - kind: ConfigMap
      namespace: payments
      managedFieldsManagers:
        - kube-controller-manager
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
      allowEmpty: false
      enabled: true
    syncOptions:
      - Validate=false
      - CreateNamespace=true
      - PrunePropagationPolicy=foreground
      - PruneLast=true
      - RespectIgnoreDifferences=true
      - ApplyOutOfSyncOnly=true
    retry:
      limit: 5
      backoff:
        duration: 5s
        factor: 2
        maxDuration: 3m
    managedNamespaceMetadata:
      labels:
        istio-injection: enabled
      annotations:
        owner: payments
"#;

const PROJECT: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: payments
  namespace: argocd
  finalizers:
    - resources-finalizer.argocd.argoproj.io
spec:
  description: Payments team services
  sourceRepos:
    - https://github.com/acme/payments*
    - '!https://github.com/acme/payments-legacy.git'
  sourceNamespaces:
    - payments-apps
  destinations:
    - namespace: payments
      server: https://kubernetes.default.svc
    - namespace: 'payments-*'
      name: 'prod-*'
  destinationServiceAccounts:
    - server: https://kubernetes.default.svc
      namespace: payments
      defaultServiceAccount: payments-deployer
  clusterResourceWhitelist:
    - group: ''
      kind: Namespace
  clusterResourceBlacklist:
    - group: rbac.authorization.k8s.io
      kind: ClusterRole
  namespaceResourceWhitelist:
    - group: '*'
      kind: '*'
  namespaceResourceBlacklist:
    - group: ''
      kind: ResourceQuota
  orphanedResources:
    warn: true
    ignore:
      - group: ''
        kind: ConfigMap
        name: kube-root-ca.crt
  roles:
    - name: ci
      description: Sync from CI
      policies:
        - p, proj:payments:ci, applications, sync, payments/*, allow
        - p, proj:payments:ci, applications, get, payments/*, allow
      jwtTokens:
        - iat: 1700000000
          exp: 1800000000
          id: 7f3cbd21-6f5e-4b0e-9d8f-0d7a7c1e2b3a
    - name: readers
      groups:
        - acme:payments-readers
        - '"acme:ops,oncall"'
      policies:
        - p, proj:payments:readers, applications, get, payments/*, allow
        - p, proj:payments:readers, logs, get, payments/*, allow
  syncWindows:
    - kind: allow
      schedule: '0 8 * * MON-FRI'
      duration: 10h
      applications:
        - '*'
      timeZone: Europe/Berlin
      description: Working hours
    - kind: deny
      schedule: '0 0 24 12 *'
      duration: 48h
      namespaces:
        - payments
      clusters:
        - prod-*
      manualSync: true
      andOperator: true
      syncOverrun: true
  signatureKeys:
    - keyID: 4AEE18F83AFDEB23
  permitOnlyProjectScopedClusters: true
status:
  jwtTokensByRole:
    ci:
      items:
        - iat: 1700000000
          exp: 1800000000
          id: 7f3cbd21-6f5e-4b0e-9d8f-0d7a7c1e2b3a
"#;

/// An Application as `kubectl get application guestbook -o yaml` prints it after the
/// Argo CD controller has synced it (status, operation state, history, server metadata).
const CONTROLLER_STATUS: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"argoproj.io/v1alpha1","kind":"Application","metadata":{"annotations":{},"name":"guestbook","namespace":"argocd"}}
  creationTimestamp: "2024-10-01T09:12:44Z"
  generation: 42
  name: guestbook
  namespace: argocd
  resourceVersion: "123456"
  uid: 3a1b6a9e-1f2c-4d5e-8f90-a1b2c3d4e5f6
  managedFields:
    - apiVersion: argoproj.io/v1alpha1
      fieldsType: FieldsV1
      fieldsV1:
        f:spec:
          .: {}
          f:project: {}
      manager: kubectl-client-side-apply
      operation: Update
      time: "2024-10-01T09:12:44Z"
spec:
  destination:
    namespace: guestbook
    server: https://kubernetes.default.svc
  project: default
  source:
    path: guestbook
    repoURL: https://github.com/argoproj/argocd-example-apps.git
    targetRevision: HEAD
  syncPolicy:
    automated: {}
status:
  controllerNamespace: argocd
  health:
    lastTransitionTime: "2024-10-01T09:13:20Z"
    status: Healthy
  history:
    - deployStartedAt: "2024-10-01T09:12:50Z"
      deployedAt: "2024-10-01T09:13:02Z"
      id: 0
      initiatedBy:
        automated: true
      revision: 53e28ff20cc530b9ada2173fbbd64d48338583ba
      source:
        path: guestbook
        repoURL: https://github.com/argoproj/argocd-example-apps.git
        targetRevision: HEAD
    - deployStartedAt: "2024-10-02T07:00:01Z"
      deployedAt: "2024-10-02T07:00:09Z"
      id: 1
      initiatedBy:
        username: admin
      revision: 9b2d6c0f3e1a4b5c6d7e8f90a1b2c3d4e5f6a7b8
      source:
        path: guestbook
        repoURL: https://github.com/argoproj/argocd-example-apps.git
        targetRevision: HEAD
  conditions:
    - lastTransitionTime: "2024-10-02T07:05:00Z"
      message: ConfigMap/guestbook-config is part of applications argocd/guestbook and argocd/guestbook-v2
      type: SharedResourceWarning
  operationState:
    finishedAt: "2024-10-02T07:00:09Z"
    message: successfully synced (all tasks run)
    operation:
      initiatedBy:
        username: admin
      retry:
        limit: 5
      sync:
        prune: true
        revision: 9b2d6c0f3e1a4b5c6d7e8f90a1b2c3d4e5f6a7b8
        syncOptions:
          - CreateNamespace=true
        syncStrategy:
          hook: {}
    phase: Succeeded
    retryCount: 1
    startedAt: "2024-10-02T07:00:01Z"
    syncResult:
      resources:
        - group: batch
          hookPhase: Succeeded
          hookType: PreSync
          kind: Job
          message: job.batch/db-migrate created
          name: db-migrate
          namespace: guestbook
          status: Synced
          syncPhase: PreSync
          version: v1
        - group: ""
          hookPhase: Running
          kind: Service
          message: service/guestbook-ui unchanged
          name: guestbook-ui
          namespace: guestbook
          status: Synced
          syncPhase: Sync
          version: v1
        - group: apps
          hookPhase: Running
          kind: Deployment
          message: deployment.apps/guestbook-ui configured
          name: guestbook-ui
          namespace: guestbook
          status: Synced
          syncPhase: Sync
          version: v1
        - group: ""
          kind: ConfigMap
          message: pruned
          name: old-config
          namespace: guestbook
          status: Pruned
          syncPhase: Sync
          version: v1
      revision: 9b2d6c0f3e1a4b5c6d7e8f90a1b2c3d4e5f6a7b8
      source:
        path: guestbook
        repoURL: https://github.com/argoproj/argocd-example-apps.git
        targetRevision: HEAD
  reconciledAt: "2024-10-02T07:10:00Z"
  resourceHealthSource: appTree
  resources:
    - kind: Service
      name: guestbook-ui
      namespace: guestbook
      status: Synced
      version: v1
      health:
        status: Healthy
    - group: apps
      health:
        message: Waiting for rollout to finish
        status: Progressing
      kind: Deployment
      name: guestbook-ui
      namespace: guestbook
      status: OutOfSync
      syncWave: -1
      version: v1
    - group: batch
      hook: true
      kind: Job
      name: db-migrate
      namespace: guestbook
      requiresPruning: true
      status: OutOfSync
      version: v1
  sourceType: Directory
  summary:
    externalURLs:
      - https://guestbook.acme.io
    images:
      - gcr.io/heptio-images/ks-guestbook-demo:0.2
  sync:
    comparedTo:
      destination:
        namespace: guestbook
        server: https://kubernetes.default.svc
      source:
        path: guestbook
        repoURL: https://github.com/argoproj/argocd-example-apps.git
        targetRevision: HEAD
    revision: 9b2d6c0f3e1a4b5c6d7e8f90a1b2c3d4e5f6a7b8
    status: OutOfSync
operation:
  info:
    - name: Reason
      value: rollback requested from the UI
  initiatedBy:
    username: admin
  retry:
    backoff:
      duration: 10s
      factor: 2
      maxDuration: 1m
    limit: 2
  sync:
    dryRun: false
    prune: true
    resources:
      - group: apps
        kind: Deployment
        name: guestbook-ui
        namespace: guestbook
    revision: 53e28ff20cc530b9ada2173fbbd64d48338583ba
    syncOptions:
      - ServerSideApply=true
    syncStrategy:
      apply:
        force: true
"#;

/// Every Application field that the fixtures above leave out: multi-source status, source
/// hydrator (spec and status), every operation field.
const EVERY_OTHER_APPLICATION_FIELD: &str = r#"
apiVersion: capstan.dev/v1alpha1
kind: Application
metadata:
  name: hydrated
  generateName: hydrated-
  namespace: apps
  deletionTimestamp: "2024-10-03T00:00:00Z"
  deletionGracePeriodSeconds: 30
  selfLink: /apis/argoproj.io/v1alpha1/namespaces/apps/applications/hydrated
  ownerReferences:
    - apiVersion: argoproj.io/v1alpha1
      kind: Application
      name: root
      uid: 0e1d2c3b-4a59-6877-8695-a4b3c2d1e0f9
      controller: true
      blockOwnerDeletion: true
spec:
  project: default
  sourceHydrator:
    drySource:
      repoURL: https://github.com/acme/dry.git
      targetRevision: main
      path: apps/hydrated
      helm:
        valueFiles: [values.yaml]
      kustomize:
        namePrefix: h-
      directory:
        recurse: true
      plugin:
        name: cmp
    syncSource:
      targetBranch: env/prod
      path: apps/hydrated
    hydrateTo:
      targetBranch: env/prod-next
  destination:
    server: https://kubernetes.default.svc
    namespace: hydrated
status:
  observedAt: "2024-10-02T07:10:00Z"
  sourceTypes: [Helm, Kustomize, Directory, Plugin]
  sync:
    status: Synced
    revisions: [aaaaaaa, bbbbbbb]
    comparedTo:
      destination:
        name: prod
        namespace: hydrated
      sources:
        - repoURL: https://github.com/acme/a.git
          path: a
        - repoURL: https://github.com/acme/b.git
          ref: b
      ignoreDifferences:
        - kind: Secret
          jsonPointers: [/data]
  health:
    status: Degraded
    message: Back-off pulling image
  resources:
    - group: apps
      kind: Deployment
      name: web
      namespace: hydrated
      status: Unknown
      requiresDeletionConfirmation: true
      health:
        status: Missing
  history:
    - id: 3
      deployedAt: "2024-10-02T07:00:09Z"
      sources:
        - repoURL: https://github.com/acme/a.git
          path: a
      revisions: [aaaaaaa, bbbbbbb]
  operationState:
    phase: Failed
    message: one or more objects failed to apply
    startedAt: "2024-10-02T07:00:01Z"
    operation:
      sync:
        sources:
          - repoURL: https://github.com/acme/a.git
            path: a
        revisions: [aaaaaaa]
        manifests: ["apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local\n"]
        autoHealAttemptsCount: 2
        syncStrategy:
          hook:
            force: true
        source:
          repoURL: https://github.com/acme/a.git
          path: a
    syncResult:
      revisions: [aaaaaaa]
      sources:
        - repoURL: https://github.com/acme/a.git
          path: a
      managedNamespaceMetadata:
        labels: {team: a}
        annotations: {note: b}
      resources:
        - kind: Pod
          name: smoke
          hookType: PostSync
          hookPhase: Failed
          syncPhase: SyncFail
          status: SyncFailed
          message: pod failed
  sourceHydrator:
    lastSuccessfulOperation:
      drySHA: "1111111"
      hydratedSHA: "2222222"
      sourceHydrator:
        drySource:
          repoURL: https://github.com/acme/dry.git
          targetRevision: main
          path: apps/hydrated
        syncSource:
          targetBranch: env/prod
          path: apps/hydrated
    currentOperation:
      startedAt: "2024-10-02T08:00:00Z"
      finishedAt: "2024-10-02T08:00:30Z"
      phase: Hydrated
      message: done
      drySHA: "3333333"
      hydratedSHA: "4444444"
      sourceHydrator:
        drySource:
          repoURL: https://github.com/acme/dry.git
          targetRevision: main
          path: apps/hydrated
        syncSource:
          targetBranch: env/prod
          path: apps/hydrated
"#;

const CLUSTER: &str = r#"
apiVersion: capstan.dev/v1alpha1
kind: Cluster
metadata:
  name: prod-eu-1
  labels:
    env: prod
    region: eu-west-1
  annotations:
    team: platform
spec:
  name: arn:aws:eks:eu-west-1:123456789012:cluster/prod-eu-1
  server: https://ABCDEF0123456789.gr7.eu-west-1.eks.amazonaws.com
  namespaces: [payments, shop]
  clusterResources: true
  project: platform
  shard: 3
  config:
    awsAuthConfig:
      clusterName: prod-eu-1
      roleARN: arn:aws:iam::123456789012:role/capstan-deployer
      profile: default
    tlsClientConfig:
      caData: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=
      serverName: kubernetes.default
    disableCompression: true
    proxyUrl: socks5://proxy.internal:1080
status:
  connectionState:
    status: Successful
    message: ""
    attemptedAt: "2024-10-02T07:00:00Z"
  serverVersion: "1.30"
  cacheInfo:
    resourcesCount: 1520
    apisCount: 87
    lastCacheSyncTime: "2024-10-02T06:59:00Z"
  applicationsCount: 12
  apiVersions: [v1, apps/v1]
  refreshRequestedAt: "2024-10-02T06:00:00Z"
"#;

const CLUSTER_WITH_EVERY_CREDENTIAL_FIELD: &str = r#"
apiVersion: capstan.dev/v1alpha1
kind: Cluster
metadata:
  name: lab
spec:
  server: https://10.0.0.1:6443
  config:
    username: admin
    password: s3cret-password
    bearerToken: eyJhbGciOi-token
    tlsClientConfig:
      insecure: true
      certData: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t
      keyData: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t
    execProviderConfig:
      command: argocd-k8s-auth
      args: [gcp]
      env:
        GOOGLE_APPLICATION_CREDENTIALS: /var/run/creds.json
      apiVersion: client.authentication.k8s.io/v1beta1
      installHint: install the gke auth plugin
"#;

const REPOSITORY: &str = r#"
apiVersion: capstan.dev/v1alpha1
kind: Repository
metadata:
  name: payments-git
spec:
  url: https://github.com/acme/payments.git
  type: git
  name: payments
  project: payments
  username: capstan
  password: ghp_examplePersonalAccessToken
  insecure: false
  insecureIgnoreHostKey: false
  enableLfs: true
  tlsClientCertData: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
  tlsClientCertKey: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
  githubAppPrivateKey: "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
  githubAppID: 12345
  githubAppInstallationID: 67890
  githubAppEnterpriseBaseUrl: https://ghe.acme.io/api/v3
  gcpServiceAccountKey: '{"type": "service_account", "private_key_id": "gcp-key-0042"}'
  forceHttpBasicAuth: true
  useAzureWorkloadIdentity: false
  bearerToken: bbdc-token
  sshPrivateKey: ""
  enableOCI: false
  insecureOCIForceHttp: false
  proxy: http://proxy.internal:3128
  noProxy: .acme.io,10.0.0.0/8
status:
  connectionState:
    status: Failed
    message: authentication required
    attemptedAt: "2024-10-02T07:00:00Z"
  inheritedCreds: true
"#;

#[test]
fn guestbook_round_trips_and_keeps_its_api_version() {
    let object = assert_round_trip(GUESTBOOK);
    let Object::Application(app) = object else {
        panic!("not an Application")
    };
    assert_eq!(app.api_version, ApiVersion::ArgoCd);
    assert_eq!(app.metadata.name, "guestbook");
    let source = app.spec.source.as_ref().expect("source");
    assert_eq!(
        source.repo_url,
        "https://github.com/argoproj/argocd-example-apps.git"
    );
    assert_eq!(source.target_revision, "HEAD");
    assert_eq!(source.path, "guestbook");
    assert_eq!(app.spec.destination.server, IN_CLUSTER_SERVER);
    let yaml = app.to_yaml().expect("serialises");
    assert!(
        yaml.starts_with("apiVersion: argoproj.io/v1alpha1\nkind: Application\n"),
        "{yaml}"
    );
    assert!(app.validate().is_ok(), "{:?}", app.validate());

    let mut capstan = (*app).clone();
    capstan.api_version = ApiVersion::Capstan;
    assert!(
        capstan
            .to_yaml()
            .expect("serialises")
            .starts_with("apiVersion: capstan.dev/v1alpha1\n")
    );
}

#[test]
fn helm_values_object_is_kept_exactly_and_in_order() {
    let object = assert_round_trip(HELM);
    let Object::Application(app) = object else {
        panic!()
    };
    let helm = app
        .spec
        .source
        .as_ref()
        .and_then(|s| s.helm.as_ref())
        .expect("helm");
    assert_eq!(helm.parameters[1].name, "controller.image.tag");
    assert!(helm.parameters[1].force_string);
    assert_eq!(helm.file_parameters[0].path, "files/template.tmpl");
    assert!(helm.skip_crds && helm.skip_tests && helm.skip_schema_validation);
    assert_eq!(helm.kube_version, "1.30");

    // The free-form values are exactly what was written, key order included.
    let original = yaml_value(HELM);
    let written = yaml_value(&app.to_yaml().expect("serialises"));
    let path = "/spec/source/helm/valuesObject";
    assert_eq!(original.pointer(path), written.pointer(path));
    let values = helm.values_object.as_ref().expect("valuesObject");
    assert_eq!(
        keys(values),
        ["controller", "defaultBackend", "tcp", "nullable", "ratio"]
    );
    assert_eq!(
        keys(&values["controller"]),
        [
            "replicaCount",
            "service",
            "resources",
            "extraArgs",
            "metrics"
        ]
    );
    assert_eq!(values["nullable"], serde_json::Value::Null);
    assert_eq!(values["tcp"], serde_json::json!({}));
    let labels: Vec<_> = app.metadata.labels.keys().cloned().collect();
    assert_eq!(labels, ["team", "app.kubernetes.io/part-of"]);
    assert!(app.validate().is_ok(), "{:?}", app.validate());
}

#[test]
fn kustomize_app_round_trips() {
    let Object::Application(app) = assert_round_trip(KUSTOMIZE) else {
        panic!()
    };
    let k = app
        .spec
        .source
        .as_ref()
        .and_then(|s| s.kustomize.as_ref())
        .expect("kustomize");
    assert_eq!(k.replicas[0].count, IntOrString::Int(3));
    assert_eq!(k.replicas[1].count, IntOrString::String("2".into()));
    assert_eq!(k.patches.len(), 3);
    assert_eq!(k.patches[1].options.get("allowNameChange"), Some(&true));
    let target = k.patches[2].target.as_ref().expect("target");
    assert_eq!(
        (target.group.as_str(), target.label_selector.as_str()),
        ("apps", "tier=db")
    );
    assert!(k.label_include_templates && k.ignore_missing_components);
    assert!(app.validate().is_ok(), "{:?}", app.validate());
}

#[test]
fn multi_source_app_with_values_ref_round_trips() {
    let Object::Application(app) = assert_round_trip(MULTI_SOURCE) else {
        panic!()
    };
    assert!(app.spec.has_multiple_sources());
    assert_eq!(app.spec.sources[1].reference, "values");
    let helm = app.spec.sources[0].helm.as_ref().expect("helm");
    assert_eq!(
        helm.values,
        "prometheus:\n  prometheusSpec:\n    retention: 30d\n"
    );
    assert!(app.spec.sources[1].is_ref_only());
    assert!(app.validate().is_ok(), "{:?}", app.validate());
}

#[test]
fn plugin_app_round_trips_and_keeps_present_but_empty_parameters() {
    let Object::Application(app) = assert_round_trip(PLUGIN) else {
        panic!()
    };
    let plugin = app
        .spec
        .source
        .as_ref()
        .and_then(|s| s.plugin.as_ref())
        .expect("plugin");
    assert_eq!(plugin.parameters[0].string.as_deref(), Some("billing"));
    assert_eq!(plugin.parameters[1].array.as_ref().map(Vec::len), Some(2));
    assert_eq!(
        plugin.parameters[2]
            .map
            .as_ref()
            .and_then(|m| m.get("image.tag"))
            .map(String::as_str),
        Some("v1.2.0")
    );
    assert_eq!(plugin.parameters[3].array, Some(Vec::new()));
    let yaml = app.to_yaml().expect("serialises");
    assert!(yaml.contains("array: []"), "{yaml}");
    assert!(app.validate().is_ok(), "{:?}", app.validate());
}

#[test]
fn full_sync_policy_and_ignore_differences_round_trip() {
    let Object::Application(app) = assert_round_trip(FULL_SYNC_POLICY) else {
        panic!()
    };
    let policy = app.spec.sync_policy.as_ref().expect("syncPolicy");
    assert!(policy.is_automated());
    let automated = policy.automated.as_ref().expect("automated");
    assert_eq!(automated.enabled, Some(true));
    let retry = policy.retry.as_ref().expect("retry");
    assert_eq!(retry.limit, 5);
    let backoff = retry.backoff.as_ref().expect("backoff");
    assert_eq!(
        (
            backoff.duration.as_str(),
            backoff.factor,
            backoff.max_duration.as_str()
        ),
        ("5s", Some(2), "3m")
    );
    assert_eq!(
        policy.sync_options.value_of("PrunePropagationPolicy"),
        Some("foreground")
    );
    assert_eq!(app.spec.ignore_differences.len(), 3);
    assert_eq!(app.spec.revision_history_limit, Some(5));
    let jsonnet = &app
        .spec
        .source
        .as_ref()
        .and_then(|s| s.directory.as_ref())
        .expect("directory")
        .jsonnet;
    assert!(jsonnet.ext_vars[1].code);
    assert!(app.validate().is_ok(), "{:?}", app.validate());
}

#[test]
fn app_project_with_roles_and_windows_round_trips() {
    let Object::AppProject(project) = assert_round_trip(PROJECT) else {
        panic!()
    };
    assert_eq!(project.api_version, ApiVersion::ArgoCd);
    let spec = &project.spec;
    assert_eq!(spec.roles.len(), 2);
    assert_eq!(spec.sync_windows[0].kind, Some(SyncWindowKind::Allow));
    assert!(spec.sync_windows[1].use_and_operator && spec.sync_windows[1].sync_overrun);
    assert_eq!(
        spec.namespace_resource_whitelist.as_ref().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        spec.orphaned_resources.as_ref().and_then(|o| o.warn),
        Some(true)
    );
    let status = project.status.as_ref().expect("status");
    assert_eq!(
        status.jwt_tokens_by_role["ci"].items[0].expires_at,
        1_800_000_000
    );
    assert!(project.validate().is_ok(), "{:?}", project.validate());
}

#[test]
fn an_empty_namespace_whitelist_is_kept_because_it_denies_everything() {
    let yaml = "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: locked\nspec:\n  namespaceResourceWhitelist: []\n";
    let project = parse_app_project_yaml(yaml).expect("parses");
    assert_eq!(project.spec.namespace_resource_whitelist, Some(Vec::new()));
    let out = project.to_yaml().expect("serialises");
    assert!(out.contains("namespaceResourceWhitelist: []"), "{out}");
    let unset = parse_app_project_yaml(
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: open\n",
    )
    .expect("parses");
    assert_eq!(unset.spec.namespace_resource_whitelist, None);
}

#[test]
fn status_written_by_the_controller_round_trips() {
    let Object::Application(app) = assert_round_trip(CONTROLLER_STATUS) else {
        panic!()
    };
    let status = app.status.as_ref().expect("status");
    assert_eq!(status.sync.status, Some(SyncStatusCode::OutOfSync));
    assert_eq!(status.health.status, Some(HealthStatusCode::Healthy));
    assert_eq!(status.history.len(), 2);
    assert!(status.history[0].initiated_by.automated);
    let op = status.operation_state.as_ref().expect("operationState");
    assert_eq!(op.phase, Some(OperationPhase::Succeeded));
    assert_eq!(op.retry_count, 1);
    let result = op.sync_result.as_ref().expect("syncResult");
    assert_eq!(result.resources[0].hook_type, Some(HookType::PreSync));
    assert_eq!(result.resources[3].status, Some(ResultCode::Pruned));
    assert_eq!(status.resources[1].sync_wave, -1);
    assert_eq!(status.source_type, Some(SourceType::Directory));
    assert_eq!(status.conditions[0].condition_type, "SharedResourceWarning");
    assert_eq!(app.metadata.generation, Some(42));
    let operation = app.operation.as_ref().expect("operation");
    let sync = operation.sync.as_ref().expect("sync");
    assert!(
        sync.sync_strategy
            .as_ref()
            .and_then(|s| s.apply.as_ref())
            .is_some_and(|a| a.force)
    );
    assert_eq!(
        operation
            .retry
            .backoff
            .as_ref()
            .map(|b| b.max_duration.as_str()),
        Some("1m")
    );
    // `automated: {}` (on, with defaults) stays distinct from no automated sync.
    assert!(
        app.spec
            .sync_policy
            .as_ref()
            .is_some_and(SyncPolicy::is_automated)
    );
    assert!(app.validate().is_ok(), "{:?}", app.validate());
}

#[test]
fn argo_cd_empty_status_strings_read_as_unset() {
    // Argo CD writes Go zero values: `status: ""` in sync status, empty phases.
    let yaml = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: fresh}
spec:
  destination: {server: "https://kubernetes.default.svc"}
  source: {repoURL: "https://github.com/acme/a.git", path: a}
status:
  health: {}
  summary: {}
  sync:
    comparedTo:
      destination: {}
      source: {repoURL: ""}
    status: ""
  sourceHydrator: {}
"#;
    let app = parse_application_yaml(yaml).expect("parses");
    assert_eq!(app.status, None, "an all-default status is no status");
    assert_round_trip(yaml);
}

#[test]
fn every_other_application_field_round_trips() {
    let Object::Application(app) = assert_round_trip(EVERY_OTHER_APPLICATION_FIELD) else {
        panic!()
    };
    assert_eq!(app.api_version, ApiVersion::Capstan);
    let hydrator = app.spec.source_hydrator.as_ref().expect("sourceHydrator");
    assert_eq!(
        hydrator
            .hydrate_to
            .as_ref()
            .map(|h| h.target_branch.as_str()),
        Some("env/prod-next")
    );
    let status = app.status.as_ref().expect("status");
    assert_eq!(status.source_types.len(), 4);
    let current = status
        .source_hydrator
        .current_operation
        .as_ref()
        .expect("currentOperation");
    assert_eq!(current.phase, Some(HydrateOperationPhase::Hydrated));
    assert_eq!(current.dry_sha, "3333333");
    let op = status.operation_state.as_ref().expect("operationState");
    assert_eq!(
        op.operation
            .sync
            .as_ref()
            .map(|s| s.self_heal_attempts_count),
        Some(2)
    );
    assert_eq!(app.metadata.owner_references[0].controller, Some(true));
}

#[test]
fn clusters_and_repositories_round_trip_and_never_print_credentials() {
    let Object::Cluster(cluster) = assert_round_trip(CLUSTER) else {
        panic!()
    };
    assert_eq!(
        cluster.display_name(),
        "arn:aws:eks:eu-west-1:123456789012:cluster/prod-eu-1"
    );
    assert_eq!(cluster.spec.shard, Some(3));
    assert!(cluster.validate().is_ok(), "{:?}", cluster.validate());

    let Object::Cluster(lab) = assert_round_trip(CLUSTER_WITH_EVERY_CREDENTIAL_FIELD) else {
        panic!()
    };
    let debug = format!("{lab:?}");
    for secret in [
        "s3cret-password",
        "eyJhbGciOi-token",
        "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t",
        "/var/run/creds.json",
    ] {
        assert!(
            !debug.contains(secret),
            "Debug output leaks {secret}: {debug}"
        );
    }
    assert_eq!(lab.spec.config.bearer_token.expose(), "eyJhbGciOi-token");
    let redacted = lab.redacted().to_yaml().expect("serialises");
    assert!(
        !redacted.contains("s3cret-password") && !redacted.contains("eyJhbGciOi-token"),
        "{redacted}"
    );

    let Object::Repository(repo) = assert_round_trip(REPOSITORY) else {
        panic!()
    };
    assert_eq!(repo.spec.repo_type_or_default(), RepositoryType::Git);
    assert!(repo.spec.has_credentials());
    let debug = format!("{repo:?}");
    for secret in [
        "ghp_examplePersonalAccessToken",
        "MIIE",
        "gcp-key-0042",
        "bbdc-token",
    ] {
        assert!(!debug.contains(secret), "Debug output leaks {secret}");
    }
    let redacted = repo.redacted();
    assert!(redacted.spec.password.is_empty() && redacted.spec.github_app_private_key.is_empty());
    assert_eq!(redacted.spec.username, "capstan");
}

#[test]
fn a_multi_document_file_yields_typed_objects_and_writes_back() {
    let stream = format!(
        "# platform bootstrap\n{PROJECT}---\n{GUESTBOOK}---\n# nothing here\n---\n{CLUSTER}---\n{REPOSITORY}"
    );
    let objects = parse_objects_yaml(&stream).expect("parses");
    let kinds: Vec<_> = objects.iter().map(Object::kind).collect();
    assert_eq!(
        kinds,
        [
            ObjectKind::AppProject,
            ObjectKind::Application,
            ObjectKind::Cluster,
            ObjectKind::Repository
        ]
    );
    assert_eq!(objects[1].name(), "guestbook");
    let written = objects_to_yaml(&objects).expect("serialises");
    assert_eq!(
        parse_objects_yaml(&written).expect("output parses"),
        objects
    );
}

#[test]
fn json_input_parses_into_the_same_model() {
    let yaml_app = parse_application_yaml(HELM).expect("parses");
    let json = yaml_app.to_json().expect("serialises");
    let Object::Application(json_app) = parse_object_json(&json).expect("parses") else {
        panic!()
    };
    assert_eq!(*json_app, yaml_app);
}

#[test]
fn yaml_anchors_and_merge_keys_expand() {
    let yaml = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: merged
  labels: &labels
    team: shop
spec:
  project: default
  source:
    repoURL: https://github.com/acme/shop.git
    path: app
    kustomize:
      commonLabels:
        <<: *labels
        tier: web
  destination: &dest
    server: https://kubernetes.default.svc
    namespace: shop
"#;
    let app = parse_application_yaml(yaml).expect("parses");
    let k = app
        .spec
        .source
        .as_ref()
        .and_then(|s| s.kustomize.as_ref())
        .expect("kustomize");
    assert_eq!(
        k.common_labels.get("team").map(String::as_str),
        Some("shop")
    );
    assert_eq!(k.common_labels.get("tier").map(String::as_str), Some("web"));
}
