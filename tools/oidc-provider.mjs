// An OpenID Connect provider for tests: oidc-provider with dev interactions (a login form
// that accepts any user name), one confidential client, users' groups from GROUPS.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const groups = JSON.parse(process.env.GROUPS || '{}');
// Users whose tokens carry no email claim (then `sub` names them).
const noEmail = JSON.parse(process.env.NO_EMAIL_USERS || '[]');
const clients = JSON.parse(process.env.CLIENTS);

const provider = new Provider(issuer, {
  clients,
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  conformIdTokenClaims: false,
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => (noEmail.includes(id)
      ? { sub: id, groups: groups[id] || [] }
      : { sub: id, email: `${id}@example.com`, email_verified: true, groups: groups[id] || [] }),
  }),
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['capstan-test-cookie-key'] },
  ttl: { IdToken: Number(process.env.ID_TOKEN_TTL || 3600) },
});
provider.proxy = true;
provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
