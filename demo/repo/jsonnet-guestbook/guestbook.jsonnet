// The guestbook front end written in Jsonnet: one file evaluates to a list of objects.
local params = import 'params.libsonnet';
local labels = { app: params.name };

[
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: params.name },
    spec: {
      replicas: params.replicas,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels: labels },
        spec: {
          containers: [{
            name: 'guestbook-ui',
            image: params.image,
            ports: [{ containerPort: params.port }],
          }],
        },
      },
    },
  },
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: params.name },
    spec: {
      selector: labels,
      ports: [{ port: params.port, targetPort: params.port }],
    },
  },
]
