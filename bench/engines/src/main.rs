//! redb vs fjall on dkv's storage layout and workload.
//!
//! Store key   = xxh3_64(user_key) as 8 bytes big-endian ++ user_key
//! Store value = ts (u64 BE) ++ node (u64 BE) ++ flag (u8) ++ value bytes
//!
//! See README.md for how to run and for measured results.

mod store;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use store::{Engine, Store};
use xxhash_rust::xxh3::xxh3_64;

const HEADER_LEN: usize = 17;
/// Values are slices of this pool of random bytes, so they do not compress.
const VALUE_POOL_LEN: usize = 4 << 20;

// ---------------------------------------------------------------- options ---

struct Opts {
    engines: Vec<Engine>,
    suites: Vec<String>,
    dir: PathBuf,
    n: usize,
    large_n: usize,
    large_value: usize,
    value: usize,
    gets: usize,
    group_writes: usize,
    group_size: usize,
    single_writes: usize,
    cache_mb: u64,
    /// Any single timed step stops early (and says so) after this long.
    max_step: Duration,
    keep: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            engines: vec![Engine::Redb, Engine::Fjall],
            suites: vec!["small".into(), "durable".into(), "txn1".into(), "large".into()],
            dir: PathBuf::from("/tmp/engines-bench"),
            n: 1_000_000,
            large_n: 200_000,
            large_value: 10 * 1024,
            value: 100,
            gets: 1_000_000,
            group_writes: 50_000,
            group_size: 64,
            single_writes: 5_000,
            cache_mb: 256,
            max_step: Duration::from_secs(180),
            keep: false,
        }
    }
}

const USAGE: &str = "\
usage: engines-bench [options]
  --engine redb,fjall      engines to run (default both)
  --suite LIST             comma list of: small, durable, txn1, large (default all)
                             small   = load N x 100 B (1000 writes/txn), final sync,
                                       GETs (1 and 2 threads), disk size, reopen + count
                             durable = load N x 100 B, then group commit (64 writes + fsync)
                                       and 1 write + fsync
                             txn1    = load N x 100 B with one redb txn per write (redb only)
                             large   = load LARGE_N x 10 KiB, GETs, disk size, reopen + count
  --n N                    keys for small/durable/txn1 (default 1000000)
  --large-n N              keys for large (default 200000)
  --value BYTES            value size for small (default 100)
  --large-value BYTES      value size for large (default 10240)
  --gets N                 random GETs per read test (default 1000000)
  --group-writes N         durable writes in groups (default 50000)
  --group-size N           writes per fsync in group commit (default 64)
  --single-writes N        durable writes with one fsync each (default 5000)
  --cache-mb MB            block/page cache for both engines (default 256)
  --max-step-secs S        stop any single timed step after S seconds (default 180)
  --dir PATH               data directory (default /tmp/engines-bench), wiped at the end
  --keep                   do not delete the data directory at the end
";

fn parse_args() -> Opts {
    let mut o = Opts::default();
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str| -> usize {
        v.and_then(|s| s.replace('_', "").parse().ok()).unwrap_or_else(|| die(&format!("{what} needs a number")))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--engine" => {
                o.engines = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|e| match e {
                        "redb" => Engine::Redb,
                        "fjall" => Engine::Fjall,
                        other => die(&format!("unknown engine {other}")),
                    })
                    .collect()
            }
            "--suite" => o.suites = args.next().unwrap_or_default().split(',').map(String::from).collect(),
            "--n" => o.n = num(args.next(), "--n"),
            "--large-n" => o.large_n = num(args.next(), "--large-n"),
            "--value" => o.value = num(args.next(), "--value"),
            "--large-value" => o.large_value = num(args.next(), "--large-value"),
            "--gets" => o.gets = num(args.next(), "--gets"),
            "--group-writes" => o.group_writes = num(args.next(), "--group-writes"),
            "--group-size" => o.group_size = num(args.next(), "--group-size"),
            "--single-writes" => o.single_writes = num(args.next(), "--single-writes"),
            "--cache-mb" => o.cache_mb = num(args.next(), "--cache-mb") as u64,
            "--max-step-secs" => o.max_step = Duration::from_secs(num(args.next(), "--max-step-secs") as u64),
            "--dir" => o.dir = PathBuf::from(args.next().unwrap_or_default()),
            "--keep" => o.keep = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0)
            }
            other => die(&format!("unknown argument {other}\n{USAGE}")),
        }
    }
    o
}

fn die(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2)
}

// ------------------------------------------------------------ data layout ---

fn user_key(i: usize) -> String {
    format!("key:{i:09}")
}

/// dkv store key: 8-byte big-endian xxh3-64 of the user key, then the user key.
fn store_key(i: usize) -> Vec<u8> {
    let uk = user_key(i);
    let mut k = Vec::with_capacity(8 + uk.len());
    k.extend_from_slice(&xxh3_64(uk.as_bytes()).to_be_bytes());
    k.extend_from_slice(uk.as_bytes());
    k
}

/// dkv store value: 17-byte header (ts BE, node BE, flag) then the value bytes.
fn store_value(i: usize, len: usize, pool: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + len);
    v.extend_from_slice(&(1_700_000_000_000_000u64 + i as u64).to_be_bytes()); // ts
    v.extend_from_slice(&7u64.to_be_bytes()); // node id
    v.push(0); // flags: 0 = live value
    let off = (i.wrapping_mul(7919)) % (pool.len() - len);
    v.extend_from_slice(&pool[off..off + len]);
    v
}

// -------------------------------------------------------------- reporting ---

struct Report {
    rows: Vec<(String, String, String)>, // (engine, step, result)
}

impl Report {
    fn add(&mut self, engine: &str, step: &str, result: String) {
        println!("  {engine:6} {step:48} {result}");
        self.rows.push((engine.into(), step.into(), result));
    }

    fn print_markdown(&self) {
        println!("\n| engine | step | result |\n|---|---|---|");
        for (e, s, r) in &self.rows {
            println!("| {e} | {s} | {r} |");
        }
    }
}

fn rate(ops: usize, bytes: u64, d: Duration) -> String {
    let s = d.as_secs_f64();
    let mut out = format!("{:>10.0} ops/s  ({ops} ops in {s:.2}s", ops as f64 / s);
    if bytes > 0 {
        out += &format!(", {:.1} MB/s", bytes as f64 / s / 1e6);
    }
    out + ")"
}

/// Allocated size on disk (like `du`), in bytes.
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                total += disk_usage(&e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

// -------------------------------------------------------------- workloads ---

type R<T> = store::Result<T>;

/// Write `indices` in batches of `batch`; returns (ops done, bytes, time in put_batch).
/// Stops early if the step exceeds `max`.
fn write_keys(
    s: &dyn Store,
    indices: &[usize],
    batch: usize,
    value_len: usize,
    durable: bool,
    pool: &[u8],
    max: Duration,
) -> R<(usize, u64, Duration, bool)> {
    let mut spent = Duration::ZERO;
    let mut done = 0;
    let mut bytes = 0u64;
    let mut items: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(batch);
    for chunk in indices.chunks(batch) {
        items.clear();
        for &i in chunk {
            let (k, v) = (store_key(i), store_value(i, value_len, pool));
            bytes += (k.len() + v.len()) as u64;
            items.push((k, v));
        }
        let t = Instant::now();
        s.put_batch(&items, durable)?;
        spent += t.elapsed();
        done += chunk.len();
        if spent > max {
            return Ok((done, bytes, spent, true));
        }
    }
    Ok((done, bytes, spent, false))
}

#[allow(clippy::too_many_arguments)]
fn load(
    rep: &mut Report,
    s: &dyn Store,
    label: &str,
    n: usize,
    value_len: usize,
    batch: usize,
    pool: &[u8],
    o: &Opts,
) -> R<()> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(1));
    let (done, bytes, spent, cut) = write_keys(s, &order, batch, value_len, false, pool, o.max_step)?;
    let t = Instant::now();
    s.sync()?;
    let sync = t.elapsed();
    let cut = if cut { " [STOPPED EARLY: time limit]" } else { "" };
    rep.add(s.name(), &format!("{label} (relaxed, {batch}/batch)"), rate(done, bytes, spent) + cut);
    rep.add(s.name(), &format!("{label}: final sync"), format!("{:.3}s", sync.as_secs_f64()));
    rep.add(s.name(), &format!("{label}: load incl. final sync"), rate(done, bytes, spent + sync));
    Ok(())
}

fn random_gets(rep: &mut Report, s: &dyn Store, label: &str, n: usize, o: &Opts) -> R<()> {
    let mut rng = StdRng::seed_from_u64(2);
    let keys: Vec<Vec<u8>> = (0..o.gets).map(|_| store_key(rng.random_range(0..n))).collect();

    // 1 thread, one read snapshot (redb: read txn) per GET, like a request handler would.
    let t = Instant::now();
    let mut found = 0;
    let mut cut = "";
    for k in &keys {
        if s.get(k)?.is_some() {
            found += 1;
        }
        if found % 10_000 == 0 && t.elapsed() > o.max_step {
            cut = " [STOPPED EARLY]";
            break;
        }
    }
    let d = t.elapsed();
    check_found(found, if cut.is_empty() { keys.len() } else { found });
    rep.add(s.name(), &format!("{label}: GET 1 thread (txn per get)"), rate(found, 0, d) + cut);

    // 2 threads, same as above, keys split in halves.
    let t = Instant::now();
    let found: usize = std::thread::scope(|sc| {
        let hs: Vec<_> = keys
            .chunks(keys.len().div_ceil(2))
            .map(|part| sc.spawn(move || part.iter().filter(|k| s.get(k).unwrap().is_some()).count()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let d = t.elapsed();
    check_found(found, keys.len());
    rep.add(s.name(), &format!("{label}: GET 2 threads (txn per get)"), rate(found, 0, d));

    // 1 thread, one snapshot per 1000 GETs (shows redb's per-read-txn cost).
    let t = Instant::now();
    let mut found = 0;
    for part in keys.chunks(1000) {
        found += s.get_many(part)?;
    }
    let d = t.elapsed();
    check_found(found, keys.len());
    rep.add(s.name(), &format!("{label}: GET 1 thread (1 txn per 1000)"), rate(found, 0, d));
    Ok(())
}

fn check_found(found: usize, expected: usize) {
    assert_eq!(found, expected, "some keys that were loaded were not found");
}

fn durable_writes(rep: &mut Report, s: &dyn Store, base: usize, pool: &[u8], o: &Opts) -> R<()> {
    // New keys beyond the loaded range, so these are inserts into a populated store.
    let group: Vec<usize> = (base..base + o.group_writes).collect();
    let (done, bytes, d, cut) = write_keys(s, &group, o.group_size, o.value, true, pool, o.max_step)?;
    let cut = if cut { " [STOPPED EARLY]" } else { "" };
    let label = format!("durable: {} writes + 1 fsync", o.group_size);
    rep.add(
        s.name(),
        &label,
        rate(done, bytes, d) + &format!(", {:.0} fsync/s", (done / o.group_size) as f64 / d.as_secs_f64()) + cut,
    );

    let base = base + o.group_writes;
    let single: Vec<usize> = (base..base + o.single_writes).collect();
    let (done, bytes, d, cut) = write_keys(s, &single, 1, o.value, true, pool, o.max_step)?;
    let cut = if cut { " [STOPPED EARLY]" } else { "" };
    rep.add(s.name(), "durable: 1 write + 1 fsync", rate(done, bytes, d) + cut);
    Ok(())
}

fn reopen_and_count(rep: &mut Report, engine: Engine, dir: &Path, label: &str, expect: u64, o: &Opts) -> R<()> {
    let t = Instant::now();
    let s = store::open(engine, dir, o.cache_mb << 20)?;
    let opened = t.elapsed();
    let n = s.count_all()?;
    let total = t.elapsed();
    assert_eq!(n, expect, "key count after reopen");
    rep.add(
        engine.name(),
        &format!("{label}: reopen + count all keys"),
        format!("open {:.3}s, open+count {:.3}s ({n} keys)", opened.as_secs_f64(), total.as_secs_f64()),
    );
    // Point reads again on the reopened store (steady state: no load-time
    // memtables / pending compactions competing for the 2 cores).
    let mut rng = StdRng::seed_from_u64(3);
    // Indices 0..expect are all present (durable writes use the indices right after the load).
    let keys: Vec<Vec<u8>> = (0..o.gets).map(|_| store_key(rng.random_range(0..expect as usize))).collect();
    let t = Instant::now();
    let mut found = 0;
    for k in &keys {
        found += s.get(k)?.is_some() as usize;
    }
    check_found(found, keys.len());
    rep.add(engine.name(), &format!("{label}: GET 1 thread after reopen"), rate(found, 0, t.elapsed()));
    drop(s);
    rep.add(engine.name(), &format!("{label}: disk after reopen"), mib(disk_usage(dir)));
    Ok(())
}

// -------------------------------------------------------------------- main ---

fn main() -> R<()> {
    let o = parse_args();
    let mut pool = vec![0u8; VALUE_POOL_LEN];
    StdRng::seed_from_u64(0).fill_bytes(&mut pool);
    let mut rep = Report { rows: Vec::new() };
    let cache = o.cache_mb << 20;
    let has = |s: &str| o.suites.iter().any(|x| x == s);

    println!(
        "engines: {:?}; suites: {:?}; n={} value={}B; large_n={} large_value={}B; cache={} MiB",
        o.engines, o.suites, o.n, o.value, o.large_n, o.large_value, o.cache_mb
    );

    for &engine in &o.engines {
        let name = engine.name();

        if has("small") || has("durable") {
            let dir = o.dir.join(format!("{name}-small"));
            let _ = std::fs::remove_dir_all(&dir);
            println!("\n== {name}: {} x {} B ==", o.n, o.value);
            let s = store::open(engine, &dir, cache)?;
            let label = format!("load {}k x {}B", o.n / 1000, o.value);
            load(&mut rep, &*s, &label, o.n, o.value, 1000, &pool, &o)?;
            rep.add(name, &format!("{label}: disk after load"), mib(disk_usage(&dir)));
            let mut expect = o.n as u64;
            if has("small") {
                random_gets(&mut rep, &*s, &label, o.n, &o)?;
            }
            if has("durable") {
                durable_writes(&mut rep, &*s, o.n, &pool, &o)?;
                expect += (o.group_writes + o.single_writes) as u64;
            }
            drop(s);
            if has("small") {
                reopen_and_count(&mut rep, engine, &dir, &label, expect, &o)?;
            }
            let _ = std::fs::remove_dir_all(&dir);
        }

        if has("txn1") && engine == Engine::Redb {
            let dir = o.dir.join(format!("{name}-txn1"));
            let _ = std::fs::remove_dir_all(&dir);
            println!("\n== {name}: {} x {} B, 1 write per txn ==", o.n, o.value);
            let s = store::open(engine, &dir, cache)?;
            let label = format!("load {}k x {}B", o.n / 1000, o.value);
            load(&mut rep, &*s, &label, o.n, o.value, 1, &pool, &o)?;
            rep.add(name, &format!("{label} (1/txn): disk after load"), mib(disk_usage(&dir)));
            drop(s);
            let _ = std::fs::remove_dir_all(&dir);
        }

        if has("large") {
            let dir = o.dir.join(format!("{name}-large"));
            let _ = std::fs::remove_dir_all(&dir);
            println!("\n== {name}: {} x {} B ==", o.large_n, o.large_value);
            let s = store::open(engine, &dir, cache)?;
            let label = format!("load {}k x {}KiB", o.large_n / 1000, o.large_value / 1024);
            load(&mut rep, &*s, &label, o.large_n, o.large_value, 1000, &pool, &o)?;
            rep.add(name, &format!("{label}: disk after load"), mib(disk_usage(&dir)));
            random_gets(&mut rep, &*s, &label, o.large_n, &o)?;
            drop(s);
            reopen_and_count(&mut rep, engine, &dir, &label, o.large_n as u64, &o)?;
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    if !o.keep {
        let _ = std::fs::remove_dir_all(&o.dir);
    }
    rep.print_markdown();
    Ok(())
}
