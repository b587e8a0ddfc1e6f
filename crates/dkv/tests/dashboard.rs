//! The seed's live dashboard in a real browser: headless Chromium (Debian's `chromium`) loads
//! `GET /` of a running cluster, and the test checks that the page drew every member and every
//! token's arc. The screenshot is kept as `target/dashboard.png` (a CI artifact).

mod common;

use std::process::Command;

use common::*;

fn chromium(args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000"])
        .args(args)
        .output()
        .expect("chromium is needed for this test: apt-get install chromium")
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
    // The key counts come with heartbeats: wait until the seed has them for every node.
    eventually(std::time::Duration::from_secs(10), "key counts on the dashboard", || async {
        let d = c.seed_client().json("/dashboard.json").await.ok()?;
        let members = d["members"].as_array()?;
        let total: u64 = members.iter().map(|m| m["keys"].as_u64().unwrap_or(0)).sum();
        // The clock offsets come with them once each node has read the others' clocks.
        let clocks = members.iter().all(|m| m["clock_offset_ms"].is_i64());
        (total == 90 && clocks).then_some(())
    })
    .await;

    let out = chromium(&["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    for id in &ids {
        assert!(dom.contains(&format!("<tr class=\"member\" data-node=\"{id}\"")), "member {id} listed:\n{dom}");
    }
    assert!(dom.matches("class=\"arc\"").count() >= 3 * 128, "one arc per token (384):\n{dom}");
    assert!(dom.contains("3 members · 90 key copies · 384 tokens"), "summary line:\n{dom}");
    assert_eq!(dom.matches(">normal<").count(), 3);
    assert!(dom.contains("<th>clock</th>"), "a clock column:\n{dom}");
    assert_eq!(dom.matches(" ms</td>").count(), 3, "each node's clock offset:\n{dom}");
    assert!(!dom.contains("OFF</b></td>"), "no clock is off on one machine:\n{dom}");

    let shot = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/dashboard.png");
    let out = chromium(&["--window-size=1200,640", &format!("--screenshot={shot}"), &url]);
    assert!(out.status.success(), "screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real picture");
}
