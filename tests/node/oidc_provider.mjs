// A real OpenID provider for the single sign-on tests: the certified `oidc-provider` package
// (installed by scripts/install-clients.sh into .local/clients/oidc) with its development login
// page (any login name, any password), one confidential client, and people whose `groups` claim
// the test decides.
//
//   node tests/node/oidc_provider.mjs   with the environment:
//     OIDC_MODULES   the node_modules directory holding oidc-provider and jose
//     OIDC_PORT      port on 127.0.0.1 (the issuer is http://127.0.0.1:<port>)
//     OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI
//     OIDC_PEOPLE    JSON: { "<login>": ["group", ...] or null, ... } (unknown logins: no groups;
//                    null: no `groups` claim at all)
//
// Test-only controls (not part of any real provider), so a test can make the provider misbehave
// the way a forged or stale token would:
//   POST /_test/people   JSON body replaces OIDC_PEOPLE
//   POST /_test/tamper   {"mode": "none" | "wrong_audience" | "expired" | "bad_signature"}: how
//                        the next ID tokens are altered (re-signed with the provider's own key,
//                        except bad_signature, signed with a key nobody published)

import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const modules = process.env.OIDC_MODULES;
const { default: Provider } = await import(pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')));
const jose = await import(pathToFileURL(join(modules, 'jose', 'dist', 'webapi', 'index.js')));

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
let people = JSON.parse(process.env.OIDC_PEOPLE || '{}');
let tamper = 'none';

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };
const { privateKey: strangerKey } = await jose.generateKeyPair('RS256', { extractable: true });

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.OIDC_CLIENT_ID,
      client_secret: process.env.OIDC_CLIENT_SECRET,
      redirect_uris: [process.env.OIDC_REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  jwks: { keys: [signingJwk] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
  // Scope claims go into the ID token itself (the relying party reads only the ID token).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: ['ccp-test-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, email: `${id}@example.com`, email_verified: true, name: id };
        // `null`: the provider does not release the groups claim for this person.
        if (people[id] !== null) claims.groups = people[id] || [];
        return claims;
      },
    };
  },
  // First-party client: no consent screen.
  async loadExistingGrant(ctx) {
    const existing = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (existing) return ctx.oidc.provider.Grant.find(existing);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile groups');
    await grant.save();
    return grant;
  },
});

async function altered(idToken) {
  const claims = jose.decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  let key = privateKey;
  if (tamper === 'wrong_audience') claims.aud = 'another-application';
  if (tamper === 'expired') Object.assign(claims, { iat: now - 7200, exp: now - 3600 });
  if (tamper === 'bad_signature') key = strangerKey;
  return new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid }).sign(key);
}

provider.use(async (ctx, next) => {
  if (ctx.path.startsWith('/_test/') && ctx.method === 'POST') {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
    if (ctx.path === '/_test/people') people = body;
    else if (ctx.path === '/_test/tamper') tamper = body.mode;
    ctx.status = 204;
    return;
  }
  await next();
  if (ctx.path === '/token' && tamper !== 'none' && ctx.body && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: await altered(ctx.body.id_token) };
  }
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
