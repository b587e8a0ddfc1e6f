# The HTTP client of the tests against real containers: prepended to each of their Python helpers
# by py_helper (scripts/lib/harness.sh). One kept-alive connection per node, opened again once when
# the server closed it.
import http.client, json, urllib.parse

class Node:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.url, self.host, self.port = url, u.hostname, u.port
        self.conn = None
    def req(self, method, path, body=None):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
            try:
                self.conn.request(method, path, body=body)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close(); self.conn = None
                return resp.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # a kept-alive connection the server had closed: reconnect once
                self.conn.close(); self.conn = None
                if attempt:
                    raise
            except Exception:
                self.conn.close(); self.conn = None
                raise
    def stats(self):
        st, body = self.req("GET", "/stats")
        if st != 200:
            raise RuntimeError("%s/stats: status %d" % (self.url, st))
        return json.loads(body)
