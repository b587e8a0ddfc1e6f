//! The seed's state is soft: killing and restarting it changes no id, no token and no key, and
//! the nodes keep serving every request meanwhile. A node new to a restarted seed does not answer
//! for keys it has not copied. With `--data-dir`, a restarted seed knows its members however late
//! they come back.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn ids_and_tokens(view: &Value) -> BTreeMap<String, (String, Value)> {
    view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (m["id"].as_str().unwrap().to_string(), (m["addr"].as_str().unwrap().to_string(), m["tokens"].clone()))
        })
        .collect()
}

/// For `watch` (the seed's expiry passes come round several times in it), the seed's epoch
/// stays `epoch`: it changes no membership.
async fn assert_epoch_stays(seed: &dkv::client::Client, epoch: &Value, watch: Duration, during: &str) {
    let watch_until = tokio::time::Instant::now() + watch;
    let mut looks = 0;
    while tokio::time::Instant::now() < watch_until {
        if let Ok(view) = seed.json("/nodes").await {
            assert_eq!(view["epoch"], *epoch, "the seed changed the membership {during}: {view}");
            looks += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(looks > 10, "the seed answered {looks} times in {watch:?}");
}

/// Pause nodes `0..members`, then kill the seed and start it again with its arguments.
async fn pause_members_and_restart_seed(c: &mut Cluster, members: usize) {
    for i in 0..members {
        c.nodes[i].pause().await;
    }
    kill_and_restart_seed(c).await;
}

async fn kill_and_restart_seed(c: &mut Cluster) {
    c.seed.signal(libc::SIGKILL);
    c.seed.wait_exit(Duration::from_secs(5)).await;
    c.restart_seed();
    c.wait_seed().await;
}

/// Wait until the seed lists `members` members and every one of `clients` holds its view.
async fn wait_view_held(seed: &dkv::client::Client, clients: &[dkv::client::Client], members: usize, what: &str) {
    eventually(Duration::from_secs(10), what, || async move {
        let view = seed.json("/nodes").await.ok()?;
        if view["nodes"].as_array()?.len() != members {
            return None;
        }
        for client in clients {
            if client.json("/health").await.ok()?["epoch"] != view["epoch"] {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_restart_keeps_ids_tokens_and_every_key_with_no_failed_request() {
    let mut c = Cluster::start(3).await;
    let before = ids_and_tokens(&c.wait_normal(3).await);
    let data = dataset("s_", 300);
    write_all(&c, &[0, 1, 2], &data).await;

    // Load through every node for the whole test; no request may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let clients: Vec<_> = (0..3).map(|i| c.client(i)).collect();
        let stop = stop.clone();
        let data = data.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                let (k, v) = &data[i % data.len()];
                let client = &clients[i % 3];
                let res = if i.is_multiple_of(4) {
                    client.put(k.as_bytes(), v.clone().into_bytes()).await.map(|_| true)
                } else {
                    client.get(k.as_bytes()).await.map(|got| got.as_deref() == Some(v.as_bytes()))
                };
                match res {
                    Ok(true) => ok += 1,
                    other => failed.push(format!("{k}: {other:?}")),
                }
                i += 1;
            }
            (ok, failed)
        })
    };

    c.seed.signal(libc::SIGKILL);
    c.seed.wait_exit(Duration::from_secs(5)).await;
    // Several heartbeat intervals pass with the seed gone: nodes must keep serving.
    let down_since = tokio::time::Instant::now();
    let bad = missing(&c, &[0, 1, 2], &data).await;
    assert!(bad.is_empty(), "keys unreadable while the seed was down: {bad:?}");
    eventually(Duration::from_secs(5), "one second with the seed down", || async {
        (down_since.elapsed() > Duration::from_secs(1)).then_some(())
    })
    .await;
    for i in 0..3 {
        let h = c.client(i).json("/health").await.expect("node serves while the seed is down");
        assert_eq!(h["status"], "normal");
    }

    c.restart_seed();
    c.wait_seed().await;
    let after = ids_and_tokens(&c.wait_normal(3).await);
    assert_eq!(after, before, "ids, addresses and tokens survive a seed restart");

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed around the seed restart: {:?}",
        failed.len(),
        ok + failed.len() as u64,
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "the load loop ran ({ok} requests)");
    let bad = missing(&c, &[0, 1, 2], &data).await;
    assert!(bad.is_empty(), "missing after the seed restart: {bad:?}");
    assert_eq!(c.total_keys().await, 300 * copies(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_unseen_for_the_ttl_is_removed_and_comes_back_with_its_identity() {
    let mut c = Cluster::start(2).await;
    let before = ids_and_tokens(&c.wait_normal(2).await);
    // Pause node 1 past the seed's TTL: the seed expires it.
    c.nodes[1].pause().await;
    let seed = c.seed_client();
    eventually(Duration::from_secs(10), "the paused node to expire", || {
        let seed = seed.clone();
        async move { (seed.json("/nodes").await.ok()?["nodes"].as_array()?.len() == 1).then_some(()) }
    })
    .await;
    c.nodes[1].resume();
    let after = ids_and_tokens(&c.wait_normal(2).await);
    assert_eq!(after, before, "the node re-registered with its own id and tokens");
}

/// A seed paused past the TTL heard no heartbeat meanwhile: resumed, it expires no member. It
/// used to expire them all at once, and the first to register again served every key alone, in a
/// view of one, for a few milliseconds (found by fault injection: reads older than acknowledged
/// writes, through that node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_paused_past_the_ttl_expires_no_member_when_it_runs_again() {
    let mut c = Cluster::start(3).await;
    let before = c.wait_normal(3).await;
    c.seed.pause().await;
    // The fault itself: three TTLs (1 s each) without the seed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.seed.resume();
    // For two TTLs after it runs again (time for every pass of its expiry to come round, and for
    // a node it expired to register again), the membership stays what it was.
    assert_epoch_stays(&c.seed_client(), &before["epoch"], Duration::from_secs(2), "after the seed's pause").await;
    c.wait_normal(3).await;
}

/// The seed restarts (without a record) while the members are paused, and a brand-new node
/// reaches it first. The seed cannot tell a restart from a new cluster, so it keeps the newcomer
/// out until a member is back: made `normal` alone, as it was until 2026-12-06, the newcomer
/// answered "not found" for keys that exist, and acknowledged writes only it held, lost when it
/// was killed (found by the churn hunt). Once the members return, it joins: it copies their keys
/// before it serves them (with N=1 a key has one replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_new_to_a_restarted_seed_waits_for_the_members_and_copies_their_keys() {
    // A TTL of 10 s: the members come back well within the restarted seed's first TTL.
    let mut c = Cluster::start_full(3, &["--replication", "1"], "10s").await;
    let data = dataset("n_", 300);
    write_all(&c, &[0, 1, 2], &data).await;

    pause_members_and_restart_seed(&mut c, 3).await;
    let newcomer = c.add_node();
    let (seed, fresh) = (c.seed_client(), c.client(newcomer));
    // For 2 s (several registrations of the newcomer), no member, and no key served by it.
    let watched = tokio::time::Instant::now();
    while watched.elapsed() < Duration::from_secs(2) {
        let view = seed.json("/nodes").await.expect("the seed answers");
        assert_eq!(view["nodes"].as_array().map(Vec::len), Some(0), "the newcomer taken in alone: {view}");
        let got = fresh.get(data[0].0.as_bytes()).await;
        assert!(got.is_err(), "the newcomer answered a read alone: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..3 {
        c.nodes[i].resume();
    }
    c.wait_normal(4).await;
    let bad = missing(&c, &[0, 1, 2, newcomer], &data).await;
    assert!(bad.is_empty(), "missing once the newcomer serves: {bad:?}");
}

/// `n` nodes whose seed keeps its record of the membership (in the directory returned), a TTL
/// of 2 s: the seed is restarted with `--data-dir`, and this returns once it recorded them.
async fn with_seed_record(n: usize, node_flags: &[&str]) -> (Cluster, std::path::PathBuf) {
    let mut c = Cluster::start_full(n, node_flags, "2s").await;
    let record = temp_root("seed-record");
    c.add_seed_flags(&["--data-dir", record.to_str().unwrap()]);
    kill_and_restart_seed(&mut c).await;
    c.wait_normal(n).await;
    wait_recorded(&record, n).await;
    (c, record)
}

/// Wait until the seed's record lists `members` members.
async fn wait_recorded(record: &std::path::Path, members: usize) {
    eventually(Duration::from_secs(10), "the seed to record its view", || async {
        let bytes = std::fs::read(record.join("membership.json")).ok()?;
        (serde_json::from_slice::<Value>(&bytes).ok()?["nodes"].as_array()?.len() == members).then_some(())
    })
    .await;
}

/// A seed with `--data-dir` restarted while its members are away, and come back after its first
/// TTL, is where it was: a brand-new node that reaches it first joins beside the recorded owners
/// (a seed without the record makes it the only `normal` member, and keys it does not hold read
/// "not found" through it), and the members come back as they were, with every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_restarted_from_its_record_keeps_its_members_however_late_they_come_back() {
    let (mut c, record) = with_seed_record(3, &["--replication", "1"]).await;
    let before = ids_and_tokens(&c.seed_view().await.unwrap());
    let data = dataset("r_", 300);
    write_all(&c, &[0, 1, 2], &data).await;

    // The members go away; the seed restarts, and they stay away past its TTL.
    pause_members_and_restart_seed(&mut c, 3).await;
    assert_eq!(ids_and_tokens(&c.seed_view().await.unwrap()), before, "the recorded members, restored");
    let health = c.seed_client().json("/health").await.unwrap();
    assert_eq!(health["fresh"], false, "a restored seed is not fresh: {health}");
    c.wait_withheld(3).await;

    let newcomer = c.add_node();
    let seed = c.seed_client();
    eventually(Duration::from_secs(10), "the newcomer to register", || {
        let seed = seed.clone();
        async move { (seed.json("/nodes").await.ok()?["nodes"].as_array()?.len() == 4).then_some(()) }
    })
    .await;
    let view = c.seed_view().await.unwrap();
    let states: Vec<_> = view["nodes"].as_array().unwrap().iter().map(|m| m["state"].clone()).collect();
    assert_eq!(states.iter().filter(|s| **s == "normal").count(), 3, "the members stay the owners: {view}");
    for i in 0..3 {
        c.nodes[i].resume();
    }

    // Every key reads back through the members, with the newcomer in the view and joining.
    let old: Vec<_> = (0..3).map(|i| c.client(i)).collect();
    wait_view_held(&seed, &old, 4, "the members to hold the view with the newcomer").await;
    let bad = missing(&c, &[0, 1, 2], &data).await;
    assert!(bad.is_empty(), "missing through the members: {bad:?}");
    c.wait_normal(4).await;
    let after = ids_and_tokens(&c.seed_view().await.unwrap());
    assert!(before.iter().all(|(id, m)| after.get(id) == Some(m)), "same ids, addresses and tokens");
    let bad = missing(&c, &[0, 1, 2, newcomer], &data).await;
    assert!(bad.is_empty(), "missing once the newcomer serves: {bad:?}");
    let _ = std::fs::remove_dir_all(&record);
}

/// A seed whose record is gone from a directory where a membership was recorded (removed by a
/// failed write, or by hand as its error messages say) is a seed without a record: it holds a
/// brand-new node back while it is fresh, rather than start a new cluster with that node as the
/// only owner, which answered "not found" for every key until the members came back (found by
/// a code-reading hunt, 2026-12-07). The members, paused meanwhile, come back as the owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_whose_record_is_gone_waits_for_its_members_rather_than_start_a_new_cluster() {
    let (mut c, record) = with_seed_record(3, &[]).await;
    let before = ids_and_tokens(&c.seed_view().await.unwrap());
    for i in 0..3 {
        c.nodes[i].pause().await;
    }
    c.seed.signal(libc::SIGKILL);
    c.seed.wait_exit(Duration::from_secs(5)).await;
    std::fs::remove_file(record.join("membership.json")).unwrap();
    c.restart_seed();
    c.wait_seed().await;
    let register = serde_json::json!({ "addr": "127.0.0.1:9" });
    let (status, body) = c
        .seed_client()
        .raw(http::Method::POST, "/register", Some(serde_json::to_vec(&register).unwrap().into()))
        .await
        .unwrap();
    assert_eq!(
        status,
        http::StatusCode::SERVICE_UNAVAILABLE,
        "a newcomer held back: {}",
        String::from_utf8_lossy(&body)
    );
    for i in 0..3 {
        c.nodes[i].resume();
    }
    c.wait_normal(3).await;
    assert_eq!(ids_and_tokens(&c.seed_view().await.unwrap()), before, "the members, back as the owners");
    let _ = std::fs::remove_dir_all(&record);
}

/// A record older than the cluster (put back from a copy taken before two members left) is
/// dropped at the first member that holds a newer view, and the membership rebuilt from the
/// members' views. Without the guard the seed takes the copy as it is: the two members that left
/// are back in its view, silent, and two silent members are never expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_record_older_than_the_cluster_is_dropped_and_the_membership_rebuilt() {
    let (mut c, record) = with_seed_record(5, &[]).await;
    let copy = std::fs::read(record.join("membership.json")).unwrap();
    for leaver in [3, 4] {
        let client = c.client(leaver);
        client.to_node(http::Method::POST, "/admin/leave", None, &[http::StatusCode::ACCEPTED]).await.unwrap();
        c.nodes[leaver].wait_exit(Duration::from_secs(20)).await;
    }
    wait_recorded(&record, 3).await;
    let before = ids_and_tokens(&c.seed_view().await.unwrap());

    c.seed.signal(libc::SIGKILL);
    c.seed.wait_exit(Duration::from_secs(5)).await;
    std::fs::write(record.join("membership.json"), &copy).unwrap();
    c.restart_seed();
    c.wait_seed().await;

    let members: Vec<_> = (0..3).map(|i| c.client(i)).collect();
    wait_view_held(&c.seed_client(), &members, 3, "the members to hold the seed's rebuilt view of 3").await;
    assert_eq!(ids_and_tokens(&c.seed_view().await.unwrap()), before, "the members' view, whole");
    let _ = std::fs::remove_dir_all(&record);
}

/// Three members of five go quiet at once (paused past the TTL): the seed hears from fewer than
/// half of them, which looks like the seed cut off, so it expires none. It used to expire all
/// three, and the two it still heard from then owned every range and answered "not found" for
/// the keys they did not hold. Kept in the view, the quiet members are unreachable replicas: a
/// read through a live node returns the value or fails for want of a quorum, never "not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_half_the_members_quiet_at_once_expire_none_and_no_read_says_not_found() {
    let mut c = Cluster::start(5).await;
    let before = c.wait_normal(5).await;
    let data = dataset("q_", 100);
    write_all(&c, &[0, 1, 2, 3, 4], &data).await;
    for i in 2..5 {
        c.nodes[i].pause().await;
    }
    // The fault: three TTLs (1 s each) in which the seed hears from two members of five.
    let seed = c.seed_client();
    assert_epoch_stays(&seed, &before["epoch"], Duration::from_secs(3), "three of five members quiet").await;
    let (_, metrics) = seed.raw(http::Method::GET, "/metrics", None).await.expect("the seed's metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("dkv_seed_expiry_withheld 3"), "{metrics}");

    // Through the two live nodes, all at once (a read waits on its quiet replicas until its
    // deadline): the value or an error, never "not found".
    let reads = data.iter().enumerate().map(|(i, (k, v))| {
        let client = c.client(i % 2);
        async move { (k, v, client.get(k.as_bytes()).await) }
    });
    let mut found = 0;
    for (k, v, got) in futures_util::future::join_all(reads).await {
        match got {
            Ok(Some(got)) => {
                assert_eq!(got, v.as_bytes(), "{k}");
                found += 1;
            }
            Ok(None) => panic!("{k} read as not found through a live node, three members of five quiet"),
            Err(_) => {}
        }
    }
    assert!(found > 0, "no key had both live nodes among its replicas");

    for i in 2..5 {
        c.nodes[i].resume();
    }
    c.wait_normal(5).await;
    let bad = missing(&c, &[0, 1, 2, 3, 4], &data).await;
    assert!(bad.is_empty(), "missing once the quiet members were back: {bad:?}");
}

/// Two members of three killed for good: the seed expires neither (two silent at once), so
/// the operator removes them with `dkv remove`. A live member is refused, with what to do
/// instead; the dead go (named by id or by address), and the one left serves every key alone,
/// written before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkv_remove_takes_out_members_gone_for_good_and_refuses_a_live_one() {
    let mut c = Cluster::start(3).await;
    let view = c.wait_normal(3).await;
    let id_of = |addr: &str| {
        let nodes = view["nodes"].as_array().unwrap();
        nodes.iter().find(|m| m["addr"] == addr).unwrap()["id"].as_str().unwrap().to_string()
    };
    let ids: Vec<String> = (0..3).map(|i| id_of(&c.nodes[i].addr)).collect();
    let data = dataset("r_", 100);
    write_all(&c, &[0, 1, 2], &data).await;
    // Every key on the survivor before the others die: a write acknowledged by the two that die
    // reaches the third a moment later, and killing both first would lose it (two failures of
    // three replicas: beyond N=3, W=2). CI caught that once.
    c.wait_total_keys(&[0], data.len() as u64).await;
    c.kill_node(1).await;
    c.kill_node(2).await;
    c.wait_withheld(2).await;
    let seed = c.seed_client();
    assert_eq!(seed.json("/nodes").await.unwrap()["nodes"].as_array().unwrap().len(), 3);
    let status = dkv().args(["status", "--node", &c.nodes[0].addr]).output().expect("run dkv status");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("2 unreachable from here:")
            && status.contains("Connection refused")
            && status.contains("dkv remove --seed"),
        "{status}"
    );

    let remove = |args: &[&str]| {
        let out = dkv().arg("remove").args(["--seed", &c.seed.addr]).args(args).output().expect("run dkv");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, _, err) = remove(&[&ids[0]]);
    assert_eq!(code, Some(2), "a live member is refused: {err}");
    assert!(err.contains("409") && err.contains("is alive") && err.contains("dkv leave"), "{err}");
    let (code, _, err) = remove(&["not-an-id"]);
    assert_eq!(code, Some(2), "a malformed id is a usage error: {err}");
    let (code, _, err) = remove(&["127.0.0.1:1"]);
    assert!(code == Some(2) && err.contains("no member at 127.0.0.1:1"), "{err}");
    // One by its id, one by its address, with an unknown address between them: each is tried (the
    // first failure stopped it, and the rest stayed without a word; found by trying, 2026-12-06).
    let (code, out, err) = remove(&[&ids[1], "127.0.0.1:1", &c.nodes[2].addr.clone()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no member at 127.0.0.1:1") && err.contains("1 of the 3 members named were not removed"),
        "{err}"
    );
    assert!(out.contains(&format!("removed {}", ids[1])), "{out}");
    assert!(out.contains(&format!("removed {}", ids[2])) && out.contains("1 member left"), "{out}");
    let (code, _, err) = remove(&[&ids[1]]);
    assert!(code == Some(2) && err.contains("404") && err.contains("no member"), "{err}");

    c.wait_normal(1).await;
    let bad = missing(&c, &[0], &data).await;
    assert!(bad.is_empty(), "keys the survivor held read as missing: {bad:?}");
    c.client(0).put(b"after", b"the removal".to_vec()).await.expect("a write through the one member left");
    assert_eq!(c.client(0).get(b"after").await.unwrap().as_deref(), Some(&b"the removal"[..]));
}
