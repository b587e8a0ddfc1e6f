//! Client passwords (`--client-password`, `--client-readonly-password`) with the real tools:
//! `redis-cli -a` and `AUTH`, `HELLO 2 AUTH`, redis-py with a password, `curl -u` and Bearer,
//! the `dkv` client commands and `dkv bench`, refusals and their count in `/metrics`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const FULL: &str = "s3cret pass";
const READ_ONLY: &str = "look-only";

fn auth_flags() -> [&'static str; 6] {
    ["--client-password", FULL, "--client-readonly-password", READ_ONLY, "--cluster-secret", "members only"]
}

/// What redis-cli printed (stdout and stderr), whatever its exit status.
fn redis_cli_said(addr: &str, args: &[&str]) -> String {
    let out = redis_cli_run(addr, &[&["--no-auth-warning"], args].concat());
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)).trim().to_string()
}

/// Send raw RESP and read what comes back until the server has been quiet for 500 ms.
fn raw(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Once an address gave a wrong password, no password from it is checked for a while
/// (`guesses.rs`): poll the node at RESP `addr` with the right one until it is checked again,
/// which also forgets the address's count.
async fn until_checked_again(addr: &str) {
    let addr = addr.to_string();
    eventually(Duration::from_secs(15), "the right password checked again", || {
        let addr = addr.clone();
        async move { (redis_cli_said(&addr, &["-a", FULL, "PING"]) == "PONG").then_some(()) }
    })
    .await;
}

/// `dkv_auth_failures_total{api,reason}` of a node's `/metrics` (open without a password).
async fn failures(c: &Cluster, i: usize, api: &str, reason: &str) -> u64 {
    let text =
        String::from_utf8(c.client(i).raw(http::Method::GET, "/metrics", None).await.unwrap().1.to_vec()).unwrap();
    let needle = format!("dkv_auth_failures_total{{api=\"{api}\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .unwrap_or_else(|| panic!("no {needle} in /metrics"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp_clients_need_the_password_and_the_read_only_one_cannot_write() {
    let c = Cluster::start_resp(2, &auth_flags()).await;
    let r: Vec<String> = c.nodes.iter().map(|n| n.resp.clone().expect("resp")).collect();

    // No password: Redis's words, and nothing runs.
    assert_eq!(redis_cli_said(&r[0], &["SET", "k", "v"]), "NOAUTH Authentication required.");
    assert_eq!(redis_cli_said(&r[0], &["PING"]), "NOAUTH Authentication required.");
    // redis-cli -a sends AUTH first; --user sends AUTH default <password>.
    assert_eq!(redis_cli_said(&r[0], &["-a", FULL, "SET", "k", "v1"]), "OK");
    assert_eq!(redis_cli_said(&r[1], &["--user", "default", "--pass", FULL, "GET", "k"]), "v1");
    // A user other than Redis's default one is refused, with the right password too.
    assert!(redis_cli_said(&r[1], &["--user", "someone", "--pass", FULL, "GET", "k"]).contains("WRONGPASS"));
    assert!(redis_cli_said(&r[0], &["-a", "wrong", "GET", "k"]).contains("WRONGPASS"));
    until_checked_again(&r[0]).await;
    // The read-only password reads, but every write is refused and changes nothing.
    assert_eq!(redis_cli_said(&r[0], &["-a", READ_ONLY, "GET", "k"]), "v1");
    assert_eq!(redis_cli_said(&r[0], &["-a", READ_ONLY, "EXISTS", "k"]), "1");
    for write in [&["SET", "k", "v2"][..], &["DEL", "k"], &["MSET", "k", "v3"], &["GETDEL", "k"]] {
        let answer = redis_cli_said(&r[0], &[&["-a", READ_ONLY][..], write].concat());
        assert!(answer.starts_with("NOPERM"), "{write:?}: {answer}");
    }
    // It lists the connections, but ends none.
    assert!(redis_cli_said(&r[0], &["-a", READ_ONLY, "CLIENT", "LIST"]).starts_with("id="));
    let answer = redis_cli_said(&r[0], &["-a", READ_ONLY, "CLIENT", "KILL", "SKIPME", "no"]);
    assert!(answer.starts_with("NOPERM") && answer.contains("client|kill"), "{answer}");
    // A command dkv does not have is unknown, whichever password, as in Redis (it was refused
    // as a write under the read-only one).
    let answer = redis_cli_said(&r[0], &["-a", READ_ONLY, "FLUSHALL"]);
    assert!(answer.starts_with("ERR unknown command 'FLUSHALL'"), "{answer}");
    assert_eq!(redis_cli_said(&r[1], &["-a", FULL, "GET", "k"]), "v1");

    // HELLO 2 AUTH on a raw connection; a wrong one leaves the connection unauthenticated.
    let got = raw(&r[1], b"HELLO 2 AUTH default wrong\r\nGET k\r\n");
    let replies: Vec<&str> =
        got.split("\r\n").filter(|l| l.starts_with(['-', '+', '$']) && !l.starts_with("$-")).collect();
    assert!(replies[0].starts_with("-WRONGPASS"), "{got}");
    assert_eq!(replies[1], "-NOAUTH Authentication required.", "{got}");
    until_checked_again(&r[1]).await;
    let got = raw(&r[1], b"HELLO 2 AUTH default look-only\r\nGET k\r\nSET k x\r\nAUTH s3cret pass\r\nGET k\r\n");
    assert!(got.contains("dkv_node") && got.contains("\r\nv1\r\n"), "HELLO answered, then GET: {got}");
    assert!(got.contains("-NOPERM"), "{got}");
    // "AUTH s3cret pass" is AUTH <user> <password> with the password "pass": wrong, and the
    // read-only access the connection had stays, as in Redis.
    assert!(got.matches("-WRONGPASS").count() == 1 && got.ends_with("$2\r\nv1\r\n"), "{got}");
    until_checked_again(&r[1]).await;

    // Before AUTH only small commands, as in Redis: a 16 MiB value announced (and so reserved
    // and charged to every client's budget) or 11 arguments close the connection.
    let got = raw(&r[0], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16777216\r\nxx");
    assert!(got.starts_with("-ERR Protocol error: invalid bulk length"), "{got}");
    let got = raw(&r[0], format!("{}\r\n", ["MGET"; 11].join(" ")).as_bytes());
    assert!(got.starts_with("-ERR Protocol error"), "{got}");
    // Nor a pipeline of small commands whose replies it never reads: the node reads on while
    // its replies wait, and the unparsed rest may hold 32 KiB before AUTH, not
    // --max-query-buffer (64 MiB of the shared budget a connection, found by trying,
    // 2026-12-06). 35 MB of them, more than the sockets hold: the node closes the connection,
    // so the write fails.
    let r0 = r[0].clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&r0).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let pipeline = b"GET k\r\n".repeat(5_000_000);
        s.write_all(&pipeline).map_err(|e| e.kind())
    })
    .await
    .unwrap();
    assert!(
        matches!(written, Err(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)),
        "closed, not buffered: {written:?}"
    );
    // After it, the same value is taken.
    let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{FULL}\r\n", FULL.len());
    let set = [
        format!("{auth}*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", 1 << 20).into_bytes(),
        vec![b'b'; 1 << 20],
        b"\r\n".to_vec(),
    ];
    assert_eq!(raw(&r[0], &set.concat()), "+OK\r\n+OK\r\n");

    // redis-py with a password, a wrong one, and the read-only one.
    let script = r#"
import sys, time, redis
port = int(sys.argv[1])
a = redis.Redis(host="127.0.0.1", port=port, password=sys.argv[2])
assert a.set("py:k", b"\x00\xff") is True
assert redis.Redis(host="127.0.0.1", port=port, username="default", password=sys.argv[2]).get("py:k") == b"\x00\xff"
try:
    redis.Redis(host="127.0.0.1", port=port, password="nope").get("py:k")
    raise SystemExit("a wrong password must fail")
except redis.ResponseError as e:  # redis-py 4 raises WRONGPASS as a ResponseError, from Redis too
    assert "WRONGPASS" in str(e), str(e)
# No password from this address is checked for a while: what a client sees meanwhile.
ro = redis.Redis(host="127.0.0.1", port=port, password=sys.argv[3])
deadline = time.time() + 10
while True:
    try:
        assert ro.get("py:k") == b"\x00\xff"
        break
    except redis.ResponseError as e:
        assert "too many wrong passwords from 127.0.0.1" in str(e) and time.time() < deadline, str(e)
        time.sleep(0.02)
try:
    ro.set("py:k", "x")
    raise SystemExit("the read-only password must not write")
except redis.ResponseError as e:
    assert "NOPERM" in str(e) or "permission" in str(e).lower(), str(e)
try:
    redis.Redis(host="127.0.0.1", port=port).get("py:k")
    raise SystemExit("no password must fail")
except redis.AuthenticationError:
    pass
except redis.ResponseError as e:
    assert "NOAUTH" in str(e) or "Authentication" in str(e), str(e)
print("ok")
"#;
    let port = r[0].rsplit_once(':').unwrap().1;
    let out = redis_py(script, &[port, FULL, READ_ONLY]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "redis-py: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every refusal counted, by reason.
    assert!(failures(&c, 0, "resp", "missing").await >= 3);
    assert!(failures(&c, 0, "resp", "wrong_password").await >= 2);
    assert!(failures(&c, 0, "resp", "read_only").await >= 5);
    assert_eq!(failures(&c, 1, "resp", "wrong_password").await, 3, "the two on the raw connection, the unknown user");
    assert_eq!(failures(&c, 1, "resp", "read_only").await, 1);
    assert_eq!(failures(&c, 1, "http", "missing").await, 0);

    // dkv bench passes --password over both protocols.
    for protocol in ["http", "resp"] {
        let out = dkv()
            .args(["bench", "--node", &c.nodes[0].addr, "--protocol", protocol, "-n", "200", "-c", "4"])
            .args(["--keys", "50", "--password", FULL])
            .output()
            .unwrap();
        assert!(out.status.success(), "bench over {protocol}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Guessing is slow: once an address gave a wrong password, none from it is checked for a while,
/// the right one neither, so a guesser learns nothing faster by pipelining or by giving up on
/// slow answers (100 000 pipelined wrong `AUTH`s were all checked, as fast as `GET`s, until
/// 2026-12-06). Another address is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_makes_its_address_wait_before_the_next_is_checked() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let c = Cluster::start_resp(1, &auth_flags()).await;
    let r = c.nodes[0].resp.clone().expect("resp");
    let right = format!("*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n${}\r\n{FULL}\r\n", FULL.len());

    // 1 000 wrong ones pipelined, then the right one: a few are checked at most.
    let got = raw(&r, &[b"AUTH wrong\r\n".repeat(1000), right.clone().into_bytes()].concat());
    let checked = got.matches("-WRONGPASS").count();
    let unchecked = got.matches("-ERR too many wrong passwords from 127.0.0.1 lately").count();
    assert!((1..=3).contains(&checked) && checked + unchecked == 1001, "{checked} checked, {unchecked} not");
    assert!(!got.contains("+OK"), "the right one after them was not checked either");
    until_checked_again(&r).await;

    // From 127.0.0.1 a wrong one, then from 127.0.0.2 and from 127.0.0.1 the right one: the
    // other address is checked, this one not.
    let from = |ip: [u8; 4]| {
        let r = r.clone();
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
            BufReader::new(socket.connect(r.parse().unwrap()).await.expect("connect"))
        }
    };
    let (mut one, mut two) = (from([127, 0, 0, 1]).await, from([127, 0, 0, 2]).await);
    let say = async |conn: &mut BufReader<tokio::net::TcpStream>, what: &[u8]| {
        conn.get_mut().write_all(what).await.unwrap();
        let mut line = String::new();
        conn.read_line(&mut line).await.unwrap();
        line.trim_end().to_string()
    };
    assert!(say(&mut one, b"AUTH wrong\r\n").await.starts_with("-WRONGPASS"));
    assert_eq!(say(&mut two, right.as_bytes()).await, "+OK", "another address");
    let refused = say(&mut one, right.as_bytes()).await;
    assert!(
        refused.starts_with("-ERR too many wrong passwords from 127.0.0.1 lately: none is checked for the next"),
        "{refused}"
    );
    until_checked_again(&r).await;
    assert_eq!(say(&mut one, right.as_bytes()).await, "+OK");
    assert!(failures(&c, 0, "resp", "too_soon").await >= 998);
}

/// As [`until_checked_again`], over HTTP at `addr` with the `Authorization` header `bearer`.
async fn until_checked_again_over_http(addr: &str, bearer: &str) {
    let (addr, bearer) = (addr.to_string(), bearer.to_string());
    eventually(Duration::from_secs(15), "the right password checked again", || {
        let (addr, bearer) = (addr.clone(), bearer.clone());
        async move { (curl(&["-H", &bearer, &format!("http://{addr}/get?key=k")]).0 == 200).then_some(()) }
    })
    .await;
}

/// curl's status, headers and body.
/// Two requests to `url` with one curl, on one connection, the first with `first`'s options and
/// the second with `second`'s: both answers, heads included, in lower case.
fn one_connection(first: &[&str], second: &[&str], url: &str) -> String {
    let args = [&["-s", "-i"][..], first, &[url, "--next", "-s", "-i"], second, &[url]].concat();
    let out = tool("curl").args(args).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).to_lowercase()
}

fn curl(args: &[&str]) -> (u16, String, String) {
    let out = tool("curl").args(["-s", "-D", "-", "-o", "/dev/stderr"]).args(args).output().expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head, String::from_utf8_lossy(&out.stderr).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_clients_need_the_password_as_bearer_or_basic() {
    let c = Cluster::start_with(2, &auth_flags()).await;
    let (a, b) = (c.nodes[0].addr.clone(), c.nodes[1].addr.clone());
    let basic = format!("anyone:{FULL}");
    let bearer = format!("Authorization: Bearer {FULL}");

    let (status, head, body) = curl(&["-X", "PUT", "--data", "v1", &format!("http://{a}/put?key=k")]);
    assert_eq!(status, 401, "{head}");
    assert!(head.to_lowercase().contains("www-authenticate: basic realm=\"dkv\""), "{head}");
    assert!(head.contains("x-dkv-node"), "signed like every answer: {head}");
    assert_eq!(body.lines().count(), 1, "{body:?}");
    assert_eq!(curl(&["-u", &basic, "-X", "PUT", "--data", "v1", &format!("http://{a}/put?key=k")]).0, 204);
    let (status, _, body) = curl(&["-H", &bearer, &format!("http://{b}/get?key=k")]);
    assert_eq!((status, body.as_str()), (200, "v1"));
    assert_eq!(curl(&["-u", &format!("default:{FULL}"), &format!("http://{b}/get?key=k")]).2, "v1");
    // A wrong one; then no password from this address is checked for a while, the right one
    // neither: a `429` that says when (guessing is slow, `guesses.rs`). One curl, one
    // connection, so the second comes within the wait however slow the machine.
    let both = one_connection(&["-u", "default:wrong"], &["-H", &bearer], &format!("http://{a}/get?key=k"));
    let (first, second) = both.split_once("\r\n\r\ninvalid username-password pair").expect("the 401's line");
    assert!(first.starts_with("http/1.1 401"), "{both}");
    assert!(second.contains("http/1.1 429") && second.contains("retry-after: 1"), "{both}");
    assert!(second.contains("too many wrong passwords from 127.0.0.1 lately"), "{both}");
    until_checked_again_over_http(&a, &bearer).await;
    assert_eq!(curl(&["-H", "Authorization: Bearer wrong", &format!("http://{a}/get?key=k")]).0, 401);
    until_checked_again_over_http(&a, &bearer).await;
    assert_eq!(curl(&[&format!("http://{a}/no-such-path")]).0, 401, "a path nobody listed needs the password too");

    // The read-only password: reads yes, writes 403 and nothing changes.
    let ro = format!("x:{READ_ONLY}");
    assert_eq!(curl(&["-u", &ro, &format!("http://{a}/get?key=k")]).2, "v1");
    let (status, _, body) = curl(&["-u", &ro, "-X", "PUT", "--data", "v2", &format!("http://{a}/put?key=k")]);
    assert_eq!(status, 403);
    assert!(body.contains("read-only"), "{body}");
    assert_eq!(curl(&["-u", &ro, "-X", "DELETE", &format!("http://{a}/delete?key=k")]).0, 403);
    assert_eq!(curl(&["-H", &bearer, &format!("http://{a}/get?key=k")]).2, "v1");

    // A header that carries no password guesses none: refused as missing, and the right
    // password right after it, on the same connection, is taken (it started the back-off, as
    // a wrong password does, until 2026-12-07: found by a hunt).
    let both = one_connection(&["-H", "Authorization: Basic !!!"], &["-H", &bearer], &format!("http://{b}/get?key=k"));
    let (first, second) = both.split_once("\r\n\r\nthe authorization header carries no password").expect("its line");
    assert!(first.starts_with("http/1.1 401"), "{both}");
    assert!(second.contains("http/1.1 200") && second.ends_with("v1"), "{both}");

    // Open without a password: health for load balancers, and what monitoring reads.
    for path in ["/health", "/metrics", "/stats", "/cluster", "/openapi.json"] {
        assert_eq!(curl(&[&format!("http://{a}{path}")]).0, 200, "{path}");
    }

    // The client commands: --password, DKV_PASSWORD, and a clear error without.
    let out = dkv().args(["put", "cli", "yes", "--node", &a, "--password", FULL]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dkv().args(["get", "cli", "--node", &b]).env("DKV_PASSWORD", READ_ONLY).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "yes");
    let out = dkv().args(["get", "cli", "--node", &b]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "refused, not missing");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dkv().args(["status", "--node", &a, "--password", FULL]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Node 0 saw two requests without a password (the first PUT, the unknown path), node 1 one.
    assert_eq!(failures(&c, 0, "http", "missing").await, 2);
    assert_eq!(failures(&c, 0, "http", "wrong_password").await, 2);
    assert!(failures(&c, 0, "http", "too_soon").await >= 1);
    assert_eq!(failures(&c, 0, "http", "read_only").await, 2);
    assert_eq!(failures(&c, 1, "http", "missing").await, 2, "Basic !!!, and dkv get without --password");
    assert_eq!(failures(&c, 1, "http", "wrong_password").await, 0);
    assert_eq!(failures(&c, 0, "resp", "missing").await, 0);

    // `dkv where` without the password: the 401 and what to do about it (every replica showed
    // as "unreachable", exit code 0).
    let out = dkv().args(["where", "cli", "--node", &a]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("401") && err.contains("--password or DKV_PASSWORD"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_flags_that_mean_nothing_are_refused_at_start() {
    let file = std::env::temp_dir().join(format!("dkv-test-pw-{}", std::process::id()));
    std::fs::write(&file, "").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--client-readonly-password", "x"], "needs --client-password"),
        (&["--client-password", "s3cret-x", "--cluster-secret", "s3cret-x"], "the same as --cluster-secret"),
        (&["--client-password", "x"], "needs --cluster-secret"),
        (&["--client-password", "x", "--client-readonly-password", "x"], "the same as --client-password"),
        (&["--client-password-file", file.to_str().unwrap()], "empty"),
    ];
    for (flags, why) in cases {
        let out =
            dkv().args(["node", "--listen", "127.0.0.1:0", "--seed", "127.0.0.1:1"]).args(flags).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {err}");
        assert!(err.contains(why), "{flags:?}: {err}");
    }
    let _ = std::fs::remove_file(file);
    // A cluster secret refused (here from the environment, with `echo`'s newline) is not
    // printed: clap's own error quoted it whole into the logs.
    let out = dkv()
        .args(["node", "--listen", "127.0.0.1:0", "--seed", "127.0.0.1:1"])
        .env("DKV_CLUSTER_SECRET", "very-s3cret\n")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("trailing newline") && !err.contains("very-s3cret"), "{err}");
}

/// Without a password, `AUTH default <anything>` is `+OK`, as Redis's default user without a
/// password takes any (clients given `redis://default:pw@host` connect), while `AUTH <password>`
/// says no password is set, in Redis's words. Any other user name is Redis's `WRONGPASS`, with
/// `AUTH` and with `HELLO … AUTH` (it was `+OK` until 2026-12-07, found by a hunt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_password_auth_with_a_user_name_is_ok_as_in_redis() {
    let c = Cluster::start_resp(1, &[]).await;
    let got = raw(
        c.nodes[0].resp.as_deref().expect("resp"),
        b"AUTH default anything\r\nAUTH anything\r\nPING\r\nAUTH someone x\r\nHELLO 2 AUTH someone x\r\n",
    );
    let lines: Vec<&str> = got.split("\r\n").collect();
    assert_eq!(lines[0], "+OK", "{got}");
    assert!(lines[1].starts_with("-ERR AUTH <password> called without any password configured"), "{got}");
    assert_eq!(lines[2], "+PONG", "{got}");
    assert_eq!(lines[3], "-WRONGPASS invalid username-password pair or user is disabled.", "{got}");
    assert_eq!(lines[4], "-WRONGPASS invalid username-password pair or user is disabled.", "{got}");
}
