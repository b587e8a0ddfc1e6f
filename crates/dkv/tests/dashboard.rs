//! The seed's live dashboard in a real browser: headless Chromium (Debian's `chromium`) loads
//! `GET /` and the tests read the page it drew.
//!
//! * a 3-node cluster: every member listed, the ring's arcs, key copies, the new columns;
//! * a node joining three that hold data, its copy slowed by `--move-rate` so it is still running
//!   when the page is read: the join's bar and figures, the request rates and p99 of nodes under
//!   load. Its screenshot goes to `target/dashboard.png`, or with `DKV_UPDATE_SCREENSHOT=1` to
//!   `docs/dashboard.png`, the one the README shows;
//! * a membership of a thousand (a seed alone, filled through its API): one page of rows, the
//!   ring in at most 720 arcs, drawn in bounded time.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::Method;
use serde_json::{json, Value};

fn chromium(args: &[&str]) -> std::process::Output {
    tool("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000"])
        .args(args)
        .output()
        .expect("chromium is needed for this test: apt-get install chromium")
}

fn dom(url: &str) -> String {
    let out = chromium(&["--dump-dom", url]);
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    // What the page drew, without the script (whose templates hold the same markup).
    let page = String::from_utf8_lossy(&out.stdout);
    page.split("<script>").next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_the_ring_and_the_members() {
    let mut c = Cluster::start(3).await;
    for i in 0..30 {
        c.client(i % 3).put(format!("d{i}").as_bytes(), "v").await.unwrap();
    }
    let url = format!("http://{}/", c.seed.addr);
    let ids: Vec<String> = {
        let view = c.wait_normal(3).await;
        view["nodes"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
    };
    // The key counts and loads come with heartbeats: wait until the seed has them for every node.
    let data = eventually(Duration::from_secs(10), "key counts on the dashboard", || async {
        let d = c.seed_client().json("/dashboard.json").await.ok()?;
        let members = d["members"].as_array()?;
        let total: u64 = members.iter().map(|m| m["keys"].as_u64().unwrap_or(0)).sum();
        // The clock offsets come with them once each node has read the others' clocks.
        let clocks = members.iter().all(|m| m["clock_offset_ms"].is_i64());
        let loads = members.iter().all(|m| m["requests_per_s"].is_number() && m["hints_pending"].is_u64());
        (total == 90 && clocks && loads).then_some(d)
    })
    .await;
    let arcs = data["ring"]["arcs"].as_array().unwrap().len();
    assert!(!data["ring"]["binned"].as_bool().unwrap() && (3..=384).contains(&arcs), "exact arcs: {arcs}");
    let shares: f64 = data["members"].as_array().unwrap().iter().map(|m| m["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-6, "the shares cover the ring: {shares}");

    let dom = dom(&url);
    for id in &ids {
        assert!(dom.contains(&format!("<tr class=\"member\" data-node=\"{id}\"")), "member {id} listed:\n{dom}");
    }
    assert_eq!(dom.matches("class=\"arc\"").count(), arcs, "one path per arc of the JSON:\n{dom}");
    assert!(dom.contains("3 members (3 normal) · 90 key copies · 384 tokens"), "summary line:\n{dom}");
    assert_eq!(dom.matches("<td class=\"state-normal\">normal</td>").count(), 3);
    for column in ["<th>clock</th>", "<th>req/s</th>", "<th>p99</th>", "<th>hints</th>", "<th>data moving</th>"] {
        assert!(dom.contains(column), "a column {column}:\n{dom}");
    }
    let clocks = cells(&dom, "num clock");
    assert!(clocks.len() == 3 && clocks.iter().all(|c| c.ends_with(" ms")), "each node's clock offset: {clocks:?}");
    assert!(!dom.contains("OFF</b></td>"), "no clock is off on one machine:\n{dom}");
    assert!(dom.contains(" 1–3 of 3 "), "one page:\n{dom}");
}

/// Reads through every node while `stop` is unset, so the nodes have requests to report.
fn readers(c: &Cluster, stop: &std::sync::Arc<std::sync::atomic::AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..3)
        .map(|i| {
            let (client, stop) = (c.client(i), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = client.get(format!("j{}", n % 2000).as_bytes()).await;
                    n += 1;
                }
            })
        })
        .collect()
}

/// The README's screenshot: a join in progress, with its bar.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_a_join_in_progress() {
    // 2000 keys of 2 KiB: each holder sends the newcomer about 3 MiB, at 512 KiB/s.
    let mut c = Cluster::start_with(3, &["--move-rate", "512KiB"]).await;
    let value = "v".repeat(2048);
    let data: Vec<(String, String)> = (0..2000).map(|i| (format!("j{i}"), value.clone())).collect();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (client, part) = (c.client(w % 3), data[w * 250..(w + 1) * 250].to_vec());
            tokio::spawn(async move {
                for (k, v) in part {
                    client.put(k.as_bytes(), v.into_bytes()).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = readers(&c, &stop);
    let joiner = c.add_node();
    let seed = c.seed_client();
    let joiner_addr = c.nodes[joiner].addr.clone();
    // The seed has heard of the join's first pages: some keys moved, the bar not yet full.
    let moving = eventually(Duration::from_secs(30), "a join in progress on the dashboard", || async {
        let d = seed.json("/dashboard.json").await.ok()?;
        let m = d["members"].as_array()?.iter().find(|m| m["addr"] == joiner_addr.as_str())?.clone();
        let j = m["moves"].as_array()?.iter().find(|x| x["kind"] == "join")?.clone();
        let busy = d["members"].as_array()?.iter().filter(|m| m["requests_per_s"].as_f64() > Some(0.0)).count();
        let going = j["active"] == true && j["keys"].as_u64()? > 0 && j["permille"].as_u64()? < 900;
        (going && j["planned_keys"].is_u64() && busy >= 2 && m["state"] == "joining").then_some(j)
    })
    .await;
    assert!(moving["bytes"].as_u64().unwrap() >= 2048 * moving["keys"].as_u64().unwrap(), "{moving}");

    let url = format!("http://{}/", c.seed.addr);
    let dom = dom(&url);
    assert!(dom.contains("<div class=\"move\" data-kind=\"join\""), "an active join:\n{dom}");
    assert!(dom.contains("class=\"bar\""), "with its bar:\n{dom}");
    assert!(dom.contains(" of ≈"), "the keys it expects:\n{dom}");
    // (The others may be repairing towards the newcomer meanwhile: anti-entropy runs after a change.)
    assert!(dom.contains(" moving data</div>") && !dom.contains(" 0 moving data"), "summary:\n{dom}");
    assert!(dom.contains("<td class=\"state-joining\">joining</td>"), "{dom}");
    // Nodes under load show their rate and p99 (a number, then µs, ms or s).
    let rates: Vec<f64> = cells(&dom, "num rate").iter().filter_map(|r| r.parse().ok()).collect();
    assert!(rates.iter().filter(|&&r| r > 0.0).count() >= 2, "rates {rates:?}");
    let p99s = cells(&dom, "num p99");
    assert!(p99s.iter().any(|p| p.ends_with(" µs") || p.ends_with(" ms")), "p99s {p99s:?}");
    // The join is the newcomer's, on its row.
    let row = format!("<tr class=\"member\" data-node=\"{}\"", joiner_id(&c, &joiner_addr).await);
    let row = dom.split(row.as_str()).nth(1).and_then(|r| r.split("</tr>").next()).expect("the newcomer's row");
    assert!(row.contains("<div class=\"move\" data-kind=\"join\"") && row.contains(">joining<"), "{row}");

    // Taken into target/ on every run; DKV_UPDATE_SCREENSHOT=1 makes it the README's picture, so
    // a test run does not change a tracked file.
    let shot = match std::env::var_os("DKV_UPDATE_SCREENSHOT") {
        Some(_) => concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/dashboard.png"),
        None => concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/dashboard.png"),
    };
    std::fs::create_dir_all(std::path::Path::new(shot).parent().unwrap()).unwrap();
    let out = chromium(&["--window-size=1600,720", "--hide-scrollbars", &format!("--screenshot={shot}"), &url]);
    assert!(out.status.success(), "screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real picture");
    // The join was still running when the picture was taken.
    let d = seed.json("/dashboard.json").await.unwrap();
    let m = d["members"].as_array().unwrap().iter().find(|m| m["addr"] == joiner_addr.as_str()).unwrap().clone();
    assert_eq!(m["state"], "joining", "the screenshot shows the join in progress: {m}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in load {
        r.await.unwrap();
    }
}

/// The contents of every `<td class="{class}">`.
fn cells<'a>(dom: &'a str, class: &str) -> Vec<&'a str> {
    let open = format!("<td class=\"{class}\">");
    dom.split(open.as_str()).skip(1).map(|s| s.split("</td>").next().unwrap_or("")).collect()
}

async fn joiner_id(c: &Cluster, addr: &str) -> String {
    let view = c.seed_client().json("/nodes").await.unwrap();
    let m = view["nodes"].as_array().unwrap().iter().find(|m| m["addr"] == addr).unwrap().clone();
    m["id"].as_str().unwrap().to_string()
}

/// splitmix64, for tokens spread like the random ones nodes pick.
fn tokens(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .collect()
}

/// A thousand members (a seed alone, with a view a "returning node" brings it): the page lists
/// one page of them under counts by state, draws the ring in a bounded number of arcs, and does
/// it quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_pages_a_thousand_members() {
    let addr = format!("127.0.0.1:{}", free_port());
    let _seed = spawn_seed_with_ttl(&addr, "1h");
    let seed = dkv::client::Client::new(&addr);
    eventually(Duration::from_secs(10), "the seed", || async { seed.json("/health").await.ok() }).await;
    let members: Vec<Value> = (0..1000u64)
        .map(|i| {
            let state = match i % 100 {
                0 => "joining",
                1 => "leaving",
                _ => "normal",
            };
            json!({ "id": format!("{:016x}", i + 1), "addr": format!("10.{}.{}.{}:8080", i / 65536, (i / 256) % 256, i % 256),
                "tokens": tokens(i, 128), "state": state, "last_seen_ms": 1 })
        })
        .collect();
    let me = &members[500];
    let register = json!({ "addr": me["addr"], "id": me["id"], "tokens": me["tokens"], "state": me["state"],
        "view": { "epoch": 7, "nodes": members } });
    let (status, body) =
        seed.raw(Method::POST, "/register", Some(serde_json::to_vec(&register).unwrap().into())).await.unwrap();
    assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
    // Member 00…01f5 (index 500) reports a join in progress, with requests.
    let heartbeat = json!({ "id": me["id"], "keys": 1234, "load": { "requests": 900, "window_ms": 1000, "p99_us": 2500,
        "hints_pending": 7, "moves": [{ "kind": "join", "active": true, "keys": 300, "bytes": 600000,
        "planned_keys": 1000, "planned_bytes": 2000000, "permille": 300 }] } });
    let (status, _) =
        seed.raw(Method::POST, "/heartbeat", Some(serde_json::to_vec(&heartbeat).unwrap().into())).await.unwrap();
    assert!(status.is_success());

    // The first answer draws the ring (once per view), the next ones reuse it. Bounds for a debug
    // build on a busy machine; a release build takes a few milliseconds.
    let started = Instant::now();
    seed.json("/dashboard.json").await.unwrap();
    let first = started.elapsed();
    let started = Instant::now();
    let data = seed.json("/dashboard.json").await.unwrap();
    let next = started.elapsed();
    eprintln!("dashboard.json of 1000 members: first {first:?}, then {next:?}");
    assert!(first < Duration::from_secs(10) && next < Duration::from_secs(3), "{first:?}, {next:?}");
    assert_eq!(data["members"].as_array().unwrap().len(), 1000);
    assert_eq!(data["totals"]["states"], json!({ "joining": 10, "normal": 980, "leaving": 10 }));
    let arcs = data["ring"]["arcs"].as_array().unwrap().len();
    assert!(data["ring"]["binned"] == true && arcs <= 720, "{arcs} arcs");

    let dom = dom(&format!("http://{addr}/"));
    assert_eq!(dom.matches("<tr class=\"member\"").count(), 50, "one page of rows");
    assert_eq!(dom.matches("class=\"arc\"").count(), arcs);
    assert!(dom.contains(" 1–50 of 1000 "), "{}", &dom[..2000.min(dom.len())]);
    assert!(dom.contains("1000 members (10 joining, 980 normal, 10 leaving)"));
    assert!(dom.contains("128,000 tokens drawn as"), "the ring says it is binned");
    let first = dom.find("<tr class=\"member\"").unwrap();
    assert!(
        dom[first..first + 200].contains(&format!("data-node=\"{}\"", me["id"].as_str().unwrap())),
        "the busiest first"
    );
    assert!(dom.contains("data-kind=\"join\" data-permille=\"300\""));
    // The page times its own drawing.
    let ms: f64 = dom.split("data-draw-ms=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().parse().unwrap();
    assert!(ms < 1000.0, "drawing 1000 members took {ms} ms");
}
