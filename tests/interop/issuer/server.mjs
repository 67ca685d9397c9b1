// A real Better Auth for the interop tests: the `better-auth` npm package (version pinned in
// package.json / package-lock.json) with the jwt() plugin, email/password sign-up and the
// in-memory adapter, served at /api/auth/* by a plain node:http server on 127.0.0.1.
//
// Configuration (environment; everything but the port is optional):
//   ISSUER_PORT                        port to listen on; 0 picks a free one
//   ISSUER_ALG                         jwks.keyPairConfig.alg: EdDSA (default), ES256, ES512, RS256, PS256
//   ISSUER_ROTATION_INTERVAL_SECONDS   jwks.rotationInterval (unset: no rotation, Better Auth's default)
//   ISSUER_GRACE_PERIOD_SECONDS        jwks.gracePeriod (unset: Better Auth's default, 30 days)
//   ISSUER_JWT_EXPIRATION              jwt.expirationTime, e.g. "3s" (unset: Better Auth's "15m")
//   ISSUER_JWT_ISSUER                  jwt.issuer (unset: the base URL)
//   ISSUER_JWT_AUDIENCE                jwt.audience (unset: the base URL)
//   BETTER_AUTH_SECRET                 encrypts the stored private keys (unset: random per start)
//   ISSUER_RATE_LIMIT                  "on": Better Auth's rate limiter as in production (100 requests
//                                      per 10 s per path; no client IP behind node:http, so one shared
//                                      bucket, as behind one NAT); sign-up and /token are exempt for the tests
//   ISSUER_RATE_LIMIT_JWKS             "WINDOW_SECONDS,MAX": a rateLimit.customRules entry for /jwks;
//                                      "off" exempts /jwks (the README's advice)
//   ISSUER_OAUTH_RESOURCE              a URL: @better-auth/oauth-provider on, issuing at+jwt access
//                                      tokens for that resource with the scopes tasks:read, tasks:write
//   ISSUER_SESSION_STATUS_SECRET       a secret: the sessionStatus plugin (POST /api/auth/session-status,
//                                      see the README) on, and `sid` added to the JWT by definePayload
//   ISSUER_ADMIN                       "on": the admin plugin; users whose email starts with "admin-"
//                                      are admins
//
// Once it accepts connections it prints one line on stdout: `listening <port>`.
// The memory adapter keeps nothing across restarts: every start has a new key set (new kid).

import { randomBytes } from "node:crypto";
import http from "node:http";

// `better-auth/minimal` (no Kysely) and `better-auth/plugins/jwt` load less code than the package
// root and the plugin index (which pulls in every plugin), for a quicker start.
import { memoryAdapter } from "better-auth/adapters/memory";
import { betterAuth } from "better-auth/minimal";
import { jwt } from "better-auth/plugins/jwt";

const HOST = "127.0.0.1";
const ALGORITHMS = ["EdDSA", "ES256", "ES512", "RS256", "PS256"];
const RSA_MODULUS_LENGTH = 2048;
// Only encrypts the private keys at rest in the (in-memory) jwks table, which a restart loses
// anyway: a random one per start. Verifiers never need it.
const SECRET = process.env.BETTER_AUTH_SECRET || randomBytes(32).toString("base64url");

function fail(message) {
  process.stderr.write(`issuer: ${message}\n`);
  process.exit(2);
}

function seconds(name) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) fail(`${name}: expected a positive number of seconds, got ${JSON.stringify(raw)}`);
  return value;
}

function optional(name) {
  const raw = process.env[name];
  return raw === undefined || raw === "" ? undefined : raw;
}

function keyPairConfig(alg) {
  if (!ALGORITHMS.includes(alg)) fail(`ISSUER_ALG: expected one of ${ALGORITHMS.join(", ")}, got ${JSON.stringify(alg)}`);
  return alg.startsWith("RS") || alg.startsWith("PS") ? { alg, modulusLength: RSA_MODULUS_LENGTH } : { alg };
}

function rateLimit() {
  const mode = optional("ISSUER_RATE_LIMIT");
  if (mode === undefined) return { enabled: false }; // the tests fetch tokens in a loop
  if (mode !== "on") fail(`ISSUER_RATE_LIMIT: expected "on", got ${JSON.stringify(mode)}`);
  // The tests' own sign-ups and token fetches are not what is being limited.
  const customRules = { "/sign-up/email": false, "/sign-in/email": false, "/token": false };
  const jwksRule = optional("ISSUER_RATE_LIMIT_JWKS");
  if (jwksRule === "off") customRules["/jwks"] = false;
  else if (jwksRule !== undefined) {
    const [window, max] = jwksRule.split(",").map(Number);
    if (!(window > 0 && max > 0)) fail(`ISSUER_RATE_LIMIT_JWKS: expected "WINDOW,MAX" or "off", got ${JSON.stringify(jwksRule)}`);
    customRules["/jwks"] = { window, max };
  }
  return { enabled: true, window: 10, max: 100, storage: "memory", customRules };
}

async function extraPlugins() {
  const plugins = [];
  const resource = optional("ISSUER_OAUTH_RESOURCE");
  if (resource !== undefined) {
    const { oauthProvider } = await import("@better-auth/oauth-provider");
    plugins.push(
      oauthProvider({
        loginPage: "/sign-in",
        consentPage: "/consent",
        scopes: ["openid", "profile", "email", "offline_access", "tasks:read", "tasks:write"],
        resources: [resource], // RFC 8707: a token asked for this resource is a JWT with aud = resource
        clientRegistrationDefaultResources: [resource],
      }),
    );
  }
  if (optional("ISSUER_ADMIN") === "on") {
    const { admin } = await import("better-auth/plugins/admin");
    plugins.push(admin());
  }
  const statusSecret = optional("ISSUER_SESSION_STATUS_SECRET");
  if (statusSecret !== undefined) {
    const { sessionStatus } = await import("./session-status.mjs");
    plugins.push(sessionStatus({ secret: statusSecret }));
  }
  return plugins;
}

function createAuth(baseURL, plugins) {
  const rotationInterval = seconds("ISSUER_ROTATION_INTERVAL_SECONDS");
  const gracePeriod = seconds("ISSUER_GRACE_PERIOD_SECONDS");
  const withSid = optional("ISSUER_SESSION_STATUS_SECRET") !== undefined;
  const adminOn = optional("ISSUER_ADMIN") === "on";
  return betterAuth({
    baseURL,
    basePath: "/api/auth",
    secret: SECRET,
    database: memoryAdapter({
      user: [], session: [], account: [], verification: [], jwks: [],
      oauthClient: [], oauthConsent: [], oauthRefreshToken: [], oauthAccessToken: [], oauthResource: [], oauthClientResource: [],
    }),
    emailAndPassword: { enabled: true },
    rateLimit: rateLimit(),
    telemetry: { enabled: false },
    ...(adminOn && {
      databaseHooks: {
        user: { create: { before: async (user) => ({ data: { ...user, role: user.email.startsWith("admin-") ? "admin" : "user" } }) } },
      },
    }),
    plugins: [
      jwt({
        jwks: {
          keyPairConfig: keyPairConfig(process.env.ISSUER_ALG || "EdDSA"),
          ...(rotationInterval !== undefined && { rotationInterval }),
          ...(gracePeriod !== undefined && { gracePeriod }),
        },
        jwt: {
          ...(optional("ISSUER_JWT_EXPIRATION") && { expirationTime: optional("ISSUER_JWT_EXPIRATION") }),
          ...(optional("ISSUER_JWT_ISSUER") && { issuer: optional("ISSUER_JWT_ISSUER") }),
          ...(optional("ISSUER_JWT_AUDIENCE") && { audience: optional("ISSUER_JWT_AUDIENCE") }),
          // The README's snippet: the session id as `sid`, for SESSION_CHECK=http.
          ...(withSid && { definePayload: ({ user, session }) => ({ ...user, sid: session.id }) }),
        },
      }),
      ...plugins,
    ],
  });
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

// node:http request -> Fetch Request -> auth.handler -> Fetch Response -> node:http response.
async function handle(auth, baseURL, req, res) {
  const url = new URL(req.url, baseURL);
  if (!url.pathname.startsWith("/api/auth/")) {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return;
  }
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  const request = new Request(url, { method: req.method, headers, body: hasBody ? await readBody(req) : undefined });
  const response = await auth.handler(request);
  const out = {};
  for (const [name, value] of response.headers) if (name !== "set-cookie") out[name] = value;
  const cookies = response.headers.getSetCookie();
  if (cookies.length) out["set-cookie"] = cookies;
  res.writeHead(response.status, out);
  res.end(Buffer.from(await response.arrayBuffer()));
}

const portText = process.env.ISSUER_PORT ?? "";
const port = Number(portText);
if (portText === "" || !Number.isInteger(port) || port < 0 || port > 65535) fail(`ISSUER_PORT: expected a port number, got ${JSON.stringify(portText)}`);

let auth;
let baseURL;
const server = http.createServer((req, res) => {
  handle(auth, baseURL, req, res).catch((error) => {
    process.stderr.write(`issuer: ${req.method} ${req.url}: ${error?.stack ?? error}\n`);
    if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
    res.end("internal error\n");
  });
});
server.keepAliveTimeout = 1000;

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

// Loaded before listening (optional plugins only when asked for: the plain issuer starts quicker).
const plugins = await extraPlugins();

server.listen(port, HOST, () => {
  const actual = server.address().port;
  baseURL = `http://${HOST}:${actual}`;
  auth = createAuth(baseURL, plugins); // before the ready line: no request can arrive without it
  process.stdout.write(`listening ${actual}\n`);
});
