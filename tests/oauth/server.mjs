// A real, standards-strict OAuth 2.0 / OpenID Connect authorization server on loopback for omnipost's tests:
// oidc-provider (version pinned in scripts/test.sh) with PKCE required (S256), refresh-token rotation (a used
// refresh token is refused afterwards), RFC 7009 revocation and userinfo at /userinfo.
//
//   node server.mjs <port> <redirect_uri> [<client id>:<secret>:<basic|post>:<pkce|nopkce> ...]
//
// Every consent is given at once by a custom interaction: the user "alice" (or the authorization request's
// login_hint) logs in and grants what was asked, so a test drives the whole flow by following redirects.
// Meta-style quirks it also plays: scopes separated by commas are read as space-separated, and GET
// /meta/token?<form> is the token endpoint taking its parameters in the query (Facebook's /oauth/access_token).
// Prints "ready <issuer>" on stdout once listening on 127.0.0.1.
import http from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// Where `npm install --prefix <dir> oidc-provider` put it (the tests' node_modules is not beside this file).
const modules = process.env.OIDC_PROVIDER_NODE_MODULES;
const { default: Provider } = await import(modules ? pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')).href : 'oidc-provider');

const [port, redirectUri, ...specs] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const clients = specs.map((spec) => {
  const [clientId, secret, auth, pkce] = spec.split(':');
  return {
    client_id: clientId,
    client_secret: secret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: auth === 'basic' ? 'client_secret_basic' : 'client_secret_post',
    'urn:omnipost:pkce': pkce !== 'nopkce',
  };
});
const pkceOf = new Map(clients.map((c) => [c.client_id, c['urn:omnipost:pkce']]));
clients.forEach((c) => { delete c['urn:omnipost:pkce']; });

const provider = new Provider(issuer, {
  clients,
  pkce: { required: (_ctx, client) => pkceOf.get(client.clientId) !== false },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
  },
  routes: { userinfo: '/userinfo' },
  scopes: ['openid', 'offline_access', 'profile'],
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'] },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  ttl: { AccessToken: 3600, AuthorizationCode: 60, RefreshToken: 14 * 24 * 3600, Grant: 14 * 24 * 3600, Interaction: 600, Session: 600 },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, name: `Test ${id}`, preferred_username: id }),
  }),
});

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: params.login_hint || 'alice' } }, { mergeWithLastSubmission: false });
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function metaToken(url, res) {
  const upstream = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: url.searchParams.toString(),
  });
  res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') || 'application/json' });
  res.end(await upstream.text());
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/auth' && url.searchParams.get('scope')?.includes(',')) {
    url.searchParams.set('scope', url.searchParams.get('scope').split(',').join(' '));
    req.url = url.pathname + url.search;
  }
  const handled = url.pathname.startsWith('/interaction/') ? interaction(req, res)
    : url.pathname === '/meta/token' && req.method === 'GET' ? metaToken(url, res)
      : null;
  if (handled === null) {
    callback(req, res);
    return;
  }
  handled.catch((err) => {
    process.stderr.write(`interaction failed: ${err.stack}\n`);
    if (!res.headersSent) { res.writeHead(500); }
    res.end();
  });
});
server.listen(Number(port), '127.0.0.1', () => { process.stdout.write(`ready ${issuer}\n`); });
process.on('SIGTERM', () => server.close(() => process.exit(0)));
