//! Expiry on a real cluster: the Redis commands with redis-cli, `PUT /put?ttl=` and `GET /ttl`,
//! `dkv put --ttl` and `dkv ttl`; a value expiring on every replica and swept into a tombstone
//! of its version; an expired key staying gone after anti-entropy, hints and restarts of durable
//! nodes; deadlines surviving a restart and a move to a joining node.

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode};

fn int(s: &str) -> i64 {
    s.parse().unwrap_or_else(|_| panic!("not an integer reply: {s:?}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_expiry_commands_answer_as_redis_does() {
    // N=1 on 3 nodes: most keys live elsewhere, so the commands are forwarded too.
    let c = Cluster::start_resp(3, &["--replication", "1"]).await;
    let r: Vec<String> = c.nodes.iter().map(|n| n.resp.clone().expect("resp")).collect();
    let cli = |i: usize, args: &[&str]| redis_cli(&r[i % 3], args);

    assert_eq!(cli(0, &["SET", "s", "v", "EX", "100"]), "OK");
    assert!((99..=100).contains(&int(&cli(1, &["TTL", "s"]))));
    assert!((99_000..=100_000).contains(&int(&cli(2, &["PTTL", "s"]))));
    assert_eq!(cli(0, &["TTL", "nope"]), "-2");
    assert_eq!(cli(0, &["SET", "plain", "v"]), "OK");
    assert_eq!(cli(1, &["TTL", "plain"]), "-1");
    assert_eq!(cli(1, &["EXPIRETIME", "plain"]), "-1");
    assert_eq!(cli(1, &["PEXPIRETIME", "nope"]), "-2");
    assert_eq!(cli(2, &["SETEX", "sx", "100", "v"]), "OK");
    assert!((99..=100).contains(&int(&cli(0, &["TTL", "sx"]))));
    assert_eq!(cli(1, &["PSETEX", "sx", "100000", "w"]), "OK");
    assert!((99_000..=100_000).contains(&int(&cli(2, &["PTTL", "sx"]))));
    assert_eq!(cli(0, &["GET", "sx"]), "w");
    assert_eq!(cli(0, &["SETEX", "sx", "0", "v"]), "ERR invalid expire time in 'setex' command");
    assert_eq!(cli(0, &["PSETEX", "sx", "x", "v"]), "ERR value is not an integer or out of range");
    assert_eq!(cli(0, &["GET", "sx"]), "w", "a refused SETEX changes nothing");

    // EXPIRE and friends: 1 when set, 0 for an absent key or a condition that does not hold.
    assert_eq!(cli(2, &["EXPIRE", "plain", "50"]), "1");
    assert!((49..=50).contains(&int(&cli(0, &["TTL", "plain"]))));
    assert_eq!(cli(2, &["EXPIRE", "nope", "50"]), "0");
    assert_eq!(cli(0, &["EXPIRE", "plain", "10", "NX"]), "0", "it has a deadline");
    assert_eq!(cli(0, &["EXPIRE", "plain", "10", "GT"]), "0", "10 s is sooner");
    assert_eq!(cli(0, &["EXPIRE", "plain", "10", "LT"]), "1");
    assert!(int(&cli(1, &["TTL", "plain"])) <= 10);
    assert_eq!(cli(1, &["PEXPIRE", "plain", "200000", "XX", "GT"]), "1");
    assert!(int(&cli(1, &["PTTL", "plain"])) > 190_000);
    let at = now_ms() / 1000 + 3600;
    assert_eq!(cli(2, &["EXPIREAT", "plain", &at.to_string()]), "1");
    assert_eq!(int(&cli(0, &["EXPIRETIME", "plain"])), at as i64);
    assert_eq!(int(&cli(0, &["PEXPIRETIME", "plain"])), at as i64 * 1000);
    assert_eq!(cli(1, &["PEXPIREAT", "plain", &(at * 1000 + 5).to_string()]), "1");
    assert_eq!(int(&cli(2, &["PEXPIRETIME", "plain"])), at as i64 * 1000 + 5);
    assert_eq!(cli(0, &["GET", "plain"]), "v", "the value went along");

    // PERSIST drops the deadline once.
    assert_eq!(cli(0, &["PERSIST", "plain"]), "1");
    assert_eq!(cli(1, &["TTL", "plain"]), "-1");
    assert_eq!(cli(2, &["PERSIST", "plain"]), "0");
    assert_eq!(cli(2, &["PERSIST", "nope"]), "0");

    // SET without an option drops a deadline; KEEPTTL keeps it; GET answers the old value.
    assert_eq!(cli(0, &["SET", "s", "w"]), "OK");
    assert_eq!(cli(0, &["TTL", "s"]), "-1");
    assert_eq!(cli(0, &["SET", "s", "x", "PX", "100000"]), "OK");
    assert_eq!(cli(1, &["SET", "s", "y", "KEEPTTL", "GET"]), "x");
    assert!(int(&cli(2, &["PTTL", "s"])) > 90_000);
    assert_eq!(cli(2, &["GET", "s"]), "y");

    // GETEX: the value, its deadline changed.
    assert_eq!(cli(0, &["GETEX", "s", "PERSIST"]), "y");
    assert_eq!(cli(1, &["TTL", "s"]), "-1");
    assert_eq!(cli(1, &["GETEX", "s", "EX", "30"]), "y");
    assert!((29..=30).contains(&int(&cli(2, &["TTL", "s"]))));
    assert_eq!(cli(2, &["GETEX", "s"]), "y");
    assert_eq!(cli(2, &["GETEX", "nope", "EX", "5"]), "");

    // A deadline already past deletes the key, as in Redis.
    assert_eq!(cli(0, &["SET", "gone", "v"]), "OK");
    assert_eq!(cli(1, &["EXPIRE", "gone", "-1"]), "1");
    assert_eq!(cli(2, &["EXISTS", "gone"]), "0");
    assert_eq!(cli(0, &["SET", "gone2", "v", "PXAT", "1000"]), "OK");
    assert_eq!(cli(1, &["GET", "gone2"]), "");

    // Redis's errors, word for word.
    assert_eq!(cli(0, &["SET", "k", "v", "EX", "0"]), "ERR invalid expire time in 'set' command");
    assert_eq!(cli(0, &["SET", "k", "v", "PX", "-5"]), "ERR invalid expire time in 'set' command");
    assert_eq!(cli(0, &["SET", "k", "v", "EX", "ten"]), "ERR value is not an integer or out of range");
    assert_eq!(cli(0, &["SET", "k", "v", "EX", "1", "KEEPTTL"]), "ERR syntax error");
    assert_eq!(cli(0, &["SET", "k", "v", "EX"]), "ERR syntax error");
    assert_eq!(cli(0, &["GETEX", "s", "EX", "0"]), "ERR invalid expire time in 'getex' command");
    assert_eq!(cli(0, &["GETEX", "nope", "EX", "0"]), "", "Redis looks the key up before the time");
    assert_eq!(cli(0, &["GETEX", "s", "PERSIST", "EX", "1"]), "ERR syntax error");
    assert_eq!(
        cli(0, &["EXPIRE", "s", "1", "NX", "XX"]),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(cli(0, &["EXPIRE", "s", "1", "GT", "LT"]), "ERR GT and LT options at the same time are not compatible");
    assert_eq!(cli(0, &["EXPIRE", "s", "1", "SOON"]), "ERR Unsupported option SOON");
    assert_eq!(cli(0, &["EXPIRE", "s", "9223372036854775807"]), "ERR invalid expire time in 'expire' command");
    assert_eq!(cli(0, &["TTL"]), "ERR wrong number of arguments for 'ttl' command");
    assert_eq!(cli(0, &["EXPIRE", "s"]), "ERR wrong number of arguments for 'expire' command");
    assert!((28..=30).contains(&int(&cli(2, &["TTL", "s"]))), "s untouched by the refused commands");

    // A short TTL runs out: GET, EXISTS, TTL and DBSIZE stop seeing the key.
    assert_eq!(cli(0, &["SET", "short", "v", "PX", "300"]), "OK");
    assert_eq!(cli(1, &["EXISTS", "short"]), "1");
    let keys_before = int(&cli(2, &["DBSIZE"]));
    eventually(Duration::from_secs(10), "short to expire", || async {
        (cli(1, &["GET", "short"]).is_empty()).then_some(())
    })
    .await;
    assert_eq!(cli(2, &["EXISTS", "short"]), "0");
    assert_eq!(cli(0, &["TTL", "short"]), "-2");
    eventually(Duration::from_secs(10), "the sweep to reclaim short", || async {
        (int(&cli(2, &["DBSIZE"])) == keys_before - 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_expires_on_every_replica_over_http_and_the_cli() {
    let c = Cluster::start(3).await;
    let node = format!("http://{}", c.nodes[0].addr);
    // The CLI: `dkv put --ttl`, `dkv ttl`.
    let out = dkv().args(["put", "k", "v", "--ttl", "2s", "--node", &node]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dkv().args(["ttl", "k", "--node", &format!("http://{}", c.nodes[1].addr)]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("(at 20") && text.contains('s'), "{text}");
    dkv().args(["put", "forever", "v", "--node", &node]).output().unwrap();
    let out = dkv().args(["ttl", "forever", "--node", &node]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no expiry");
    let out = dkv().args(["ttl", "nope", "--node", &node]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = dkv().args(["put", "x", "v", "--ttl", "10", "--node", &node]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--ttl"));

    // HTTP: `GET /ttl` answers JSON; a bad ttl is a 400 of one line.
    let ttl = c.client(2).ttl(b"k").await.unwrap().expect("k exists");
    assert!(ttl.ttl_ms.is_some_and(|ms| ms <= 2000), "{ttl:?}");
    let deadline = ttl.expires_at_ms.expect("a deadline");
    let (status, body) = c.client(0).raw(Method::GET, "/ttl?key=forever", None).await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &br#"{"expires_at_ms":null,"ttl_ms":null}"#[..]));
    let (status, _) = c.client(0).raw(Method::GET, "/ttl?key=nope", None).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in ["ttl=10", "ttl=0s", "ttl=soon", "ttl=-1s"] {
        let (status, body) =
            c.client(0).raw(Method::PUT, &format!("/put?key=x&{bad}"), Some("v".into())).await.unwrap();
        let line = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {line}");
        assert!(line.contains("ttl") && line.ends_with('\n') && line.lines().count() == 1, "{bad}: {line}");
    }
    let (status, _) = c.client(0).raw(Method::GET, "/get?key=k&ttl=1s", None).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "ttl is a parameter of /put only");
    assert_eq!(c.client(1).get(b"x").await.unwrap(), None, "refused writes changed nothing");

    // Every replica holds the deadline with the same version, then every node stops answering
    // the key, and every replica's sweep turns it into a tombstone of that version.
    let entries: Vec<_> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(c.local_entry(i, b"k").await.expect("a replica"));
        }
        v
    };
    assert!(entries.iter().all(|e| e.expires == Some(deadline) && e.version == entries[0].version), "{entries:?}");
    for i in 0..3 {
        eventually(Duration::from_secs(10), &format!("k to read as absent through node {i}"), || async {
            (c.client(i).get(b"k").await.unwrap().is_none()).then_some(())
        })
        .await;
        assert!(now_ms() > deadline, "not before its deadline");
    }
    for i in 0..3 {
        let swept = eventually(Duration::from_secs(10), &format!("node {i} to sweep k"), || async {
            c.local_entry(i, b"k").await.filter(|e| e.value.is_none())
        })
        .await;
        assert_eq!((swept.version, swept.expires), (entries[0].version, Some(deadline)));
        let stats = c.client(i).json("/stats").await.unwrap();
        assert_eq!(stats["keys"], 1, "forever only: {stats}");
        assert_eq!(stats["expiring"], 0, "{stats}");
        assert!(stats["tombstones"].as_u64() >= Some(1) && stats["requests"]["expired"] == 1, "{stats}");
    }
    assert_eq!(c.client(0).get(b"forever").await.unwrap().as_deref(), Some(&b"v"[..]));
}

/// Node 2 misses the write that gives `k` a deadline and comes back, after the deadline, with the
/// older value that has none. Whether the key reaches it through anti-entropy or through a hint,
/// what it gets is the tombstone of that write (or the value, which its own sweep turns into
/// one), never a reason to hand its old value back; and durable nodes keep both the tombstone
/// and the deadlines of live keys across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_stays_gone_after_anti_entropy_and_restarts_of_durable_nodes() {
    // No hints: only anti-entropy can bring node 2 up to date. A node TTL long enough that node
    // 2 stays a member while it is down, so nothing moves.
    let mut c = Cluster::start_durable(3, &["--max-hints", "0"], "60s").await;
    c.client(0).raw(Method::PUT, "/put?key=k&w=all", Some("old".into())).await.unwrap();
    c.client(0).put_with_ttl(b"live", "v", Some(Duration::from_secs(600))).await.unwrap();
    let live_deadline = c.client(0).ttl(b"live").await.unwrap().unwrap().expires_at_ms.unwrap();
    c.kill_node(2).await;
    c.client(0).put_with_ttl(b"k", "new", Some(Duration::from_millis(1500))).await.unwrap();
    let written = c.local_entry(0, b"k").await.unwrap();
    assert!(written.expires.is_some() && written.value.is_some());
    for i in 0..2 {
        eventually(Duration::from_secs(15), &format!("node {i} to sweep k"), || async {
            c.local_entry(i, b"k").await.filter(|e| e.value.is_none())
        })
        .await;
    }
    c.restart_node(2);
    c.wait_normal(3).await;
    // No read asks node 2 until it has healed: read repair would heal it too.
    let healed = eventually(Duration::from_secs(20), "anti-entropy to give node 2 the tombstone", || async {
        c.local_entry(2, b"k").await.filter(|e| e.value.is_none())
    })
    .await;
    assert_eq!((healed.version, healed.expires), (written.version, written.expires));
    for i in 0..3 {
        assert_eq!(c.local_entry(i, b"k").await.and_then(|e| e.value), None, "node {i}");
        // Every replica answers (a 503 while a peer's connection to node 2 is still backing off).
        eventually(Duration::from_secs(10), &format!("a read of k with r=all through node {i}"), || async {
            let (status, body) = c.client(i).raw(Method::GET, "/get?key=k&r=all", None).await.unwrap();
            assert_ne!(status, StatusCode::OK, "k came back: {body:?}");
            (status == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
    }
    // A durable node restarted keeps the tombstone and the live key's deadline.
    c.kill_node(0).await;
    c.restart_node(0);
    c.wait_normal(3).await;
    let k = c.local_entry(0, b"k").await.expect("the tombstone survived");
    assert_eq!((k.value, k.version), (None, written.version));
    assert_eq!(c.local_entry(0, b"live").await.unwrap().expires, Some(live_deadline));
    let ttl = c.client(0).ttl(b"live").await.unwrap().unwrap();
    assert_eq!(ttl.expires_at_ms, Some(live_deadline));
    assert!(ttl.ttl_ms.is_some_and(|ms| ms > 500_000 && ms <= 600_000), "{ttl:?}");
    assert_eq!(c.client(0).get(b"k").await.unwrap(), None);
}

/// The same, with anti-entropy off: the write node 2 missed reaches it as a hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_stays_gone_after_a_hint_is_delivered() {
    let c = Cluster::start_full(3, &["--anti-entropy-interval", "0s"], "60s").await;
    c.client(0).raw(Method::PUT, "/put?key=k&w=all", Some("old".into())).await.unwrap();
    // Paused, node 2 still holds the old value; the write times out on it and leaves a hint.
    c.nodes[2].pause().await;
    c.client(0).put_with_ttl(b"k", "new", Some(Duration::from_millis(800))).await.unwrap();
    let written = c.local_entry(0, b"k").await.unwrap();
    eventually(Duration::from_secs(15), "a hint for node 2", || async {
        let stats = c.client(0).json("/stats").await.ok()?;
        (stats["hints_pending"].as_u64()? > 0).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "k to expire", || async {
        (c.client(0).get(b"k").await.unwrap().is_none()).then_some(())
    })
    .await;
    c.nodes[2].resume();
    eventually(Duration::from_secs(20), "the hint to be delivered", || async {
        let stats = c.client(0).json("/stats").await.ok()?;
        (stats["requests"]["hints_delivered"].as_u64()? > 0).then_some(())
    })
    .await;
    let delivered = eventually(Duration::from_secs(20), "the hint, swept into a tombstone on node 2", || async {
        c.local_entry(2, b"k").await.filter(|e| e.version == written.version && e.value.is_none())
    })
    .await;
    assert_eq!(delivered.expires, written.expires);
    let (status, _) = c.client(2).raw(Method::GET, "/get?key=k&r=1", None).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND, "node 2's own copy no longer has the old value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_move_with_their_keys_to_a_joining_node() {
    // N=1: each key has one owner, and the newcomer takes a share of them.
    let mut c = Cluster::start_with(2, &["--replication", "1"]).await;
    let keys: Vec<String> = (0..60).map(|i| format!("t{i}")).collect();
    let long = |i: usize| i.is_multiple_of(2);
    let mut deadlines = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let ttl = if long(i) { Duration::from_secs(3600) } else { Duration::from_secs(6) };
        c.client(i % 2).put_with_ttl(k.as_bytes(), "v", Some(ttl)).await.unwrap();
        deadlines.push(c.client(0).ttl(k.as_bytes()).await.unwrap().unwrap().expires_at_ms.unwrap());
    }
    c.add_node();
    c.wait_normal(3).await;
    // The newcomer's share of the long keys, each with the deadline it was written with.
    let moved = eventually(Duration::from_secs(20), "the newcomer to hold some of the long keys", || async {
        let mut moved = Vec::new();
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| long(*i)) {
            if let Some(e) = c.local_entry(2, k.as_bytes()).await {
                moved.push((i, e));
            }
        }
        (!moved.is_empty()).then_some(moved)
    })
    .await;
    for (i, e) in &moved {
        assert_eq!(e.expires, Some(deadlines[*i]), "{} moved with its deadline", keys[*i]);
        let ttl = c.client(2).ttl(keys[*i].as_bytes()).await.unwrap().expect("live");
        assert_eq!(ttl.expires_at_ms, Some(deadlines[*i]), "{} through the newcomer", keys[*i]);
    }
    // The short ones run out wherever they live now, the newcomer's share included, and the
    // long ones are all there once each.
    eventually(Duration::from_secs(30), "the short keys to be swept everywhere", || async {
        let mut keys = 0;
        for i in 0..3 {
            keys += c.client(i).json("/stats").await.ok()?["keys"].as_u64()?;
        }
        (keys == 30).then_some(())
    })
    .await;
    for (i, k) in keys.iter().enumerate() {
        let ttl = c.client(i % 3).ttl(k.as_bytes()).await.unwrap();
        match long(i) {
            true => assert_eq!(ttl.and_then(|t| t.expires_at_ms), Some(deadlines[i]), "{k}"),
            false => assert_eq!(ttl, None, "{k}"),
        }
    }
}
