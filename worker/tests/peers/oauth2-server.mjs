// OAuth2 token endpoint for the worker's credential tests: oauth2-mock-server on loopback,
// checking the client id and secret (CLIENT_ID, CLIENT_SECRET) given either as HTTP basic
// auth or form fields, giving every token a unique jti, and counting token requests.
//
// Prints "READY <token port> <counter port>" when listening. GET on the counter port
// answers {"requests": n, "issued": n}.
import http from 'node:http';
import { OAuth2Server } from 'oauth2-mock-server';

const expectedId = process.env.CLIENT_ID ?? '';
const expectedSecret = process.env.CLIENT_SECRET ?? '';
let requests = 0;
let issued = 0;

function clientCredentials(req) {
  const header = req.headers.authorization ?? '';
  if (header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const at = decoded.indexOf(':');
    const unform = (s) => decodeURIComponent(s.replace(/\+/g, ' '));
    return { id: unform(decoded.slice(0, at)), secret: unform(decoded.slice(at + 1)) };
  }
  return { id: req.body.client_id, secret: req.body.client_secret };
}

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
server.service.on('beforeTokenSigning', (token) => {
  token.payload.jti = `token-${requests}`;
});
server.service.on('beforeResponse', (response, req) => {
  requests += 1;
  const { id, secret } = clientCredentials(req);
  if (id !== expectedId || secret !== expectedSecret) {
    response.statusCode = 401;
    response.body = { error: 'invalid_client', error_description: 'client authentication failed' };
    return;
  }
  issued += 1;
});
await server.start(0, '127.0.0.1');

const counter = http.createServer((_req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ requests, issued }));
});
counter.listen(0, '127.0.0.1', () => {
  console.log(`READY ${server.address().port} ${counter.address().port}`);
});
