// Settings for guestbook.jsonnet; change them here and commit.
{
  name: 'jsonnet-guestbook-ui',
  replicas: 1,
  image: 'registry.k8s.io/pause:3.10',
  port: 80,
}
