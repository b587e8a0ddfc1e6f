# The Compose tests' data helper (appended to the shared Node client by py_helper):
#   members SEED_URL            -> "total normal"
#   ring SEED_URL               -> the members' ids and a digest of their tokens
#   field URL PATH NAME[,NAME]  -> the first of those JSON fields present
#   stats-sum URL...            -> sum of /stats "keys", then per node
#   write|read|read-each COUNT URL...  -> COUNT keys (some needing URL encoding) with
#                                  byte-exact reproducible values, through rotating nodes
import http.client, json, random, sys, urllib.parse

def key(i):
    k = "ct-%04d" % i
    if i % 25 == 7:                    # some keys that need URL encoding
        k += " a/b&c=d?e%f+g\u00e9"
    return k

def value(i):
    r = random.Random(i * 7919 + 1)   # reproducible between the write and read phases
    n = r.choice([0, 1, 16, 100, 1000, 5000])
    return ("value %04d|" % i).encode() + bytes(r.getrandbits(8) for _ in range(n))

def path(op, k):
    return "/%s?key=%s" % (op, urllib.parse.quote(k.encode(), safe=""))

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "members":               # members SEED_URL -> "total normal"
        n = Node(args[0])
        st, body = n.req("GET", "/nodes")
        if st != 200:
            print("0 0 status=%d" % st); return 1
        nodes = json.loads(body)["nodes"]
        print(len(nodes), sum(1 for m in nodes if m.get("state") == "normal"))
        return 0
    if cmd == "ring":                  # ring SEED_URL -> "id:tokens-digest ..." sorted, one line
        st, body = Node(args[0]).req("GET", "/nodes")
        if st != 200:
            print("status=%d" % st); return 1
        nodes = json.loads(body)["nodes"]
        print(" ".join(sorted("%s:%x" % (m["id"], hash(tuple(m["tokens"])) & 0xffffffff) for m in nodes)))
        return 0
    if cmd == "field":                 # field URL PATH NAME[,NAME...] -> first present, or empty
        st, body = Node(args[0]).req("GET", args[1])
        doc = json.loads(body) if st == 200 else {}
        v = next((doc[n] for n in args[2].split(",") if doc.get(n) is not None), None)
        print("" if v is None else v)
        return 0
    if cmd == "stats-sum":             # stats-sum URL... -> sum of "keys", per node
        total, parts = 0, []
        for u in args:
            st, body = Node(u).req("GET", "/stats")
            if st != 200:
                print("-1 %s:status=%d" % (u, st)); return 1
            k = int(json.loads(body)["keys"])
            total += k; parts.append("%s=%d" % (u.rsplit(":", 1)[1], k))
        print(total, " ".join(parts))
        return 0
    if cmd in ("write", "read", "read-each"):
        count = int(args[0]); nodes = [Node(u) for u in args[1:]]
        bad = []
        checked = 0
        for i in range(count):
            targets = nodes if cmd == "read-each" else [nodes[i % len(nodes)]]
            for n in targets:
                checked += 1
                try:
                    if cmd == "write":
                        st, _ = n.req("PUT", path("put", key(i)), value(i))
                        if st != 204:
                            bad.append("PUT %r via %s: status %d" % (key(i), n.url, st))
                    else:
                        st, body = n.req("GET", path("get", key(i)))
                        if st != 200:
                            bad.append("GET %r via %s: status %d" % (key(i), n.url, st))
                        elif body != value(i):
                            bad.append("GET %r via %s: wrong value (%d bytes, want %d)"
                                       % (key(i), n.url, len(body), len(value(i))))
                except Exception as e:
                    bad.append("%s %r via %s: %s" % (cmd, key(i), n.url, e))
        for b in bad[:10]:
            print("    " + b)
        if len(bad) > 10:
            print("    ... and %d more" % (len(bad) - 10))
        print("    %d of %d requests exact/acknowledged through %d node(s)"
              % (checked - len(bad), checked, len(nodes)))
        return 1 if bad else 0
    print("unknown command", cmd); return 2

sys.exit(main())
