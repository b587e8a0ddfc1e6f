//! The memory engine alone, without a node around it: the time of an insert while it fills, then
//! of an overwrite and of a read of one key, picked at random among a store of N keys (`key:000000000000`… with 100-byte values,
//! as `bench/` writes them). Pinned to one CPU it is steadier than any benchmark over sockets,
//! and the way to compare two versions of the engine:
//!
//!   taskset -c 1 cargo run --release -p dkv-storage --example memory_engine -- 1000000
//!
//! Prints three rounds of 4 million operations each: the first one still warms the caches.

use std::time::Instant;

use bytes::Bytes;
use dkv_storage::{Engine, Entry, MemoryEngine, Version};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const OPS: usize = 4_000_000;

fn main() {
    let keys: usize = match std::env::args().nth(1).map(|n| n.parse()) {
        None => 1_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: memory_engine [KEYS]   (a number of keys above 0; default 1000000)");
            std::process::exit(2);
        }
    };
    let engine = MemoryEngine::new();
    let names: Vec<Vec<u8>> = (0..keys).map(|i| format!("key:{i:012}").into_bytes()).collect();
    let hashes: Vec<u64> = names.iter().map(|k| xxhash_rust::xxh3::xxh3_64(k)).collect();
    let value = Bytes::from(vec![b'x'; 100]);
    let mut ts = 0;
    let mut write = |i: usize| {
        ts += 1;
        let entry = Entry::value(Version { ts, node: 1 }, value.clone());
        engine.apply(hashes[i], &names[i], entry).expect("the memory engine does not fail");
    };
    let started = Instant::now();
    (0..keys).for_each(&mut write);
    println!("{keys} keys, filled: {:.0} ns a new key", started.elapsed().as_nanos() as f64 / keys as f64);
    // xorshift: a fixed order, the same for every build compared.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let order: Vec<usize> = (0..OPS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % keys as u64) as usize
        })
        .collect();
    for round in 1..=3 {
        let started = Instant::now();
        order.iter().for_each(|&i| write(i));
        let overwrite = started.elapsed().as_nanos() as f64 / OPS as f64;
        let started = Instant::now();
        let found = order.iter().filter(|&&i| matches!(engine.get(hashes[i], &names[i]), Ok(Some(_)))).count();
        let read = started.elapsed().as_nanos() as f64 / OPS as f64;
        assert_eq!(found, OPS, "every key written is read back");
        println!("{keys} keys, round {round}: overwrite {overwrite:.0} ns, read {read:.0} ns");
    }
}
