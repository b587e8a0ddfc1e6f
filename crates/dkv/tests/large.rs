//! Values of megabytes (up to the 16 MiB limit) through the paths that ship many entries at once.
//! Range pages and hand-offs are bounded by bytes, not entries, so a page of large values fits
//! in a frame as a page of small ones does (issue 11: a page of 512 large values never did, and a
//! join retried it forever).

mod common;

use std::time::Duration;

use common::*;

/// The largest value a node accepts by default (`--max-value-bytes`).
const MAX_VALUE: usize = 16 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_with_values_of_megabytes_finishes() {
    let mut c = Cluster::start(2).await;
    let mut data: Vec<(String, Vec<u8>)> =
        (0..24u8).map(|i| (format!("big-{i}"), vec![b'a' + i; 1_500_000 + usize::from(i)])).collect();
    data.push(("largest".into(), vec![b'z'; MAX_VALUE]));
    data.extend((0..50u8).map(|i| (format!("small-{i}"), vec![i; 100])));
    for (k, v) in &data {
        c.client(0).put(k.as_bytes(), v.clone()).await.unwrap_or_else(|e| panic!("put {k}: {e}"));
    }
    // With N = 3, the third node replicates every key: it pulls about 52 MiB from each holder.
    let new = c.add_node();
    tokio::time::timeout(Duration::from_secs(60), c.wait_normal(3)).await.expect("the join finishes");
    for (k, v) in &data {
        let got = c.local_entry(new, k.as_bytes()).await.unwrap_or_else(|| panic!("{k} not pulled"));
        assert!(got.value.as_deref() == Some(&v[..]), "{k}: {} bytes pulled", got.value_len());
    }
}
