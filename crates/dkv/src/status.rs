//! `dkv status`: the members as one node sees them (`GET /cluster`), each with what it answers on
//! `GET /stats` — key copies, bytes, hints, what moved in, clock, and what its last heartbeat
//! reported to the seed's dashboard: requests per second, p99 latency and its data movements
//! with their progress. `--watch` draws the same again every `--interval`, `--count` times.
//!
//! It has to stay usable at a thousand members. The members' `/stats` are asked for at most
//! [`IN_FLIGHT`] at a time, each bounded by [`ASK_TIMEOUT`], so one refresh of a thousand members
//! takes about as long as the slowest thirty-second of them, and an unreachable member costs one
//! timeout, not a hang. The table lists `--limit` members (the busiest first: moving data, then
//! not normal, then by address) under a count by state, and says how many it left out; `--all`
//! lists every one. `--json` prints everything whatever the limit.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::StatusArgs;
use crate::client::Client;
use crate::commands::{client, fail};
use crate::outln;

/// Members asked for their `/stats` at once.
const IN_FLIGHT: usize = 32;
/// How long one member may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn status(args: StatusArgs) -> i32 {
    let client = client(&args.client);
    // The table shows the 30 busiest by default; JSON, for a program, every member unless told.
    let limit = match (args.all, args.limit) {
        (true, _) => None,
        (false, Some(n)) => Some(n),
        (false, None) if args.json => None,
        (false, None) => Some(TABLE_ROWS),
    };
    if !args.watch {
        return match gather(&client).await {
            Ok(s) if args.json => {
                let s = limited(s, limit);
                outln!("{s:#}");
                0
            }
            Ok(s) => {
                crate::out::stdout(render(&s, limit).as_bytes());
                0
            }
            Err(e) => fail(e),
        };
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = 0u64;
    loop {
        tick.tick().await;
        // A failure goes to stderr: stdout holds tables, or one JSON document a line, only
        // (an error line there broke the documents, found by trying, 2026-12-06).
        let gathered = gather(&client).await;
        let code = gathered.as_ref().map_or_else(crate::client::ClientError::exit_code, |_| 0);
        let frame = match gathered {
            // One JSON document per line, for a program to read as they come.
            Ok(s) if args.json => format!("{}\n", limited(s, limit)),
            Ok(s) => render(&s, limit),
            Err(e) => {
                crate::errln!("dkv: {e}");
                String::new()
            }
        };
        let when = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let head = if args.json {
            String::new()
        } else if terminal {
            // Home and clear: the table redrawn in place.
            format!("\x1b[H\x1b[2J{when}  every {}  (Ctrl-C to stop)\n", humantime::format_duration(args.interval))
        } else {
            format!("--- {when}\n")
        };
        // Into a pipe, a round that could not be gathered writes nothing to stdout (a `---` line
        // with no table under it, found by trying, 2026-12-06); its error is on stderr.
        if code == 0 || terminal {
            crate::out::stdout(format!("{head}{frame}").as_bytes());
        }
        shown += 1;
        if args.count.is_some_and(|n| shown >= n) {
            // As without --watch: the last table's, with its error's code if it could not be
            // gathered.
            return code;
        }
    }
}

/// `dkv status`'s whole answer: the rows, the count by state, and the totals.
async fn gather(client: &Client) -> Result<Value, crate::client::ClientError> {
    let cluster = client.node_json("/cluster").await?;
    let members = cluster["members"].as_array().cloned().unwrap_or_default();
    let addrs: Vec<String> = members.iter().map(|m| m["addr"].as_str().unwrap_or("?").to_string()).collect();
    let stats = ask_all(client, addrs).await;
    // N comes from the asked node's own `/stats`: through its advertised address with the
    // others, or else as asked (its advertised address may not be reachable from here).
    let mine = match stats.iter().flatten().find(|s| s["id"] == cluster["id"]).cloned() {
        Some(mine) => Some(mine),
        None => client.node_json("/stats").await.ok(),
    };
    let rows = members
        .iter()
        .zip(&stats)
        .map(|(m, s)| {
            let mut row = member_row(m, s.as_ref().ok());
            if let Err(why) = s {
                row["error"] = json!(why);
            }
            row
        })
        .collect();
    Ok(summarize(&cluster, mine.as_ref(), rows, client.base()))
}

/// Every member's `/stats`, or why it did not answer, [`IN_FLIGHT`] at a time.
async fn ask_all(client: &Client, addrs: Vec<String>) -> Vec<Result<Value, String>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut asks = tokio::task::JoinSet::new();
    let n = addrs.len();
    for (i, addr) in addrs.into_iter().enumerate() {
        let (member, permits) = (client.sibling(&addr), permits.clone());
        asks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let asked = tokio::time::timeout(ASK_TIMEOUT, member.node_json("/stats")).await;
            let stats = match asked {
                Ok(answer) => answer.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {}", micros(ASK_TIMEOUT.as_micros() as u64))),
            };
            (i, stats)
        });
    }
    let mut out = vec![Err("not asked".to_string()); n];
    while let Some(done) = asks.join_next().await {
        if let Ok((i, stats)) = done {
            out[i] = stats;
        }
    }
    out
}

/// One member's row, from its entry in `/cluster` and its `/stats` (`None`: it did not answer).
fn member_row(m: &Value, stats: Option<&Value>) -> Value {
    let s = |f: &str| stats.map_or(Value::Null, |s| s[f].clone());
    let load = stats.map_or(Value::Null, |s| s["load"].clone());
    let rate = match (load["requests"].as_u64(), load["window_ms"].as_u64()) {
        (Some(n), Some(ms)) if ms > 0 => json!((n as f64 * 10_000.0 / ms as f64).round() / 10.0),
        _ => Value::Null,
    };
    json!({
        "id": m["id"],
        "addr": m["addr"],
        "state": m["state"],
        "reachable": stats.is_some(),
        "key_copies": s("keys"),
        "bytes": s("bytes"),
        "hints_pending": s("hints_pending"),
        "moved_in": stats.map_or(Value::Null, |s| s["requests"]["moved_in"].clone()),
        "tokens": m["tokens"].as_array().map_or(0, Vec::len),
        "clock_offset_ms": s("clock_offset_ms"),
        "coordinating_writes": s("coordinating_writes"),
        "coordinating": s("coordinating"),
        "seed_unheard_ms": s("seed_unheard_ms"),
        "heartbeat_interval_ms": s("heartbeat_interval_ms"),
        "epoch": s("epoch"),
        "requests_per_s": rate,
        "p99_us": load["p99_us"],
        "moves": load["moves"].as_array().cloned().unwrap_or_default(),
    })
}

/// The totals. A key has N copies, or one per serving member while there are fewer. `keys`
/// counts the copies of the members that are not joining: a joining member copies keys that
/// their owners keep until the join ends, and counted, they made 20 000 keys 40 000 for the
/// length of a join (found by trying, 2026-12-06).
fn summarize(cluster: &Value, stats: Option<&Value>, rows: Vec<Value>, via: &str) -> Value {
    let replicas = stats.and_then(|s| s["replicas"].as_u64()).unwrap_or(3);
    let serving = rows.iter().filter(|m| m["state"] != "joining").count();
    let per_key = replicas.min(serving as u64).max(1);
    // Figures the members report: saturate rather than overflow.
    let sum = |rows: &mut dyn Iterator<Item = &Value>| {
        rows.filter_map(|r| r["key_copies"].as_u64()).fold(0u64, u64::saturating_add)
    };
    let copies = sum(&mut rows.iter());
    let owned = sum(&mut rows.iter().filter(|m| m["state"] != "joining"));
    let mut states = serde_json::Map::new();
    for r in &rows {
        let state = if r["reachable"] == true { r["state"].as_str().unwrap_or("?") } else { "unreachable" };
        let n = states.get(state).and_then(Value::as_u64).unwrap_or(0);
        states.insert(state.to_string(), json!(n + 1));
    }
    json!({
        "epoch": cluster["epoch"],
        "via": via,
        "replicas": replicas,
        "copies_per_key": per_key,
        "key_copies": copies,
        "keys": owned / per_key,
        "states": states,
        "members": rows,
    })
}

fn busy(r: &Value) -> bool {
    r["moves"].as_array().is_some_and(|ms| ms.iter().any(|m| m["active"] == true))
}

/// Members listed in the table when neither `--limit` nor `--all` says.
const TABLE_ROWS: usize = 30;

/// Moving data first, then unreachable, then not `normal`, then the rest; by address within each.
fn busiest_first(mut rows: Vec<&Value>) -> Vec<&Value> {
    let rank = |r: &Value| match (busy(r), r["reachable"] == true, r["state"].as_str()) {
        (true, _, _) => 0,
        (_, false, _) => 1,
        (_, _, Some("normal")) => 3,
        _ => 2,
    };
    rows.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a["addr"].as_str().cmp(&b["addr"].as_str())));
    rows
}

/// The JSON summary with at most `limit` members, the busiest first, and `members_left_out`
/// counting the others (their states stay counted in `states`, the totals cover them all).
/// Until 2026-12-06 `--json` ignored `--limit`.
fn limited(mut summary: Value, limit: Option<usize>) -> Value {
    let Some(limit) = limit else { return summary };
    let rows: Vec<Value> = summary["members"].as_array().cloned().unwrap_or_default();
    if rows.len() <= limit {
        return summary;
    }
    let kept: Vec<Value> = busiest_first(rows.iter().collect()).into_iter().take(limit).cloned().collect();
    summary["members_left_out"] = json!(rows.len() - kept.len());
    summary["members"] = Value::Array(kept);
    summary
}

/// The table: a header, `limit` rows (all with `None`), the busiest first, and the totals.
pub fn render(summary: &Value, limit: Option<usize>) -> String {
    use std::fmt::Write;
    let rows: Vec<&Value> = summary["members"].as_array().map(|v| v.iter().collect()).unwrap_or_default();
    let mut out = String::new();
    let states = summary["states"].as_object();
    let mixed = states.is_some_and(|s| s.len() > 1);
    let shown = limit.map_or(rows.len(), |l| l.min(rows.len()));
    let by_state = match states {
        Some(s) if mixed || shown < rows.len() => {
            let mut s: Vec<(&String, &Value)> = s.iter().collect();
            s.sort_by_key(|(_, n)| std::cmp::Reverse(n.as_u64().unwrap_or(0)));
            let s: Vec<String> = s.iter().map(|(k, n)| format!("{n} {k}")).collect();
            format!(": {}", s.join(", "))
        }
        _ => String::new(),
    };
    let moving = rows.iter().filter(|r| busy(r)).count();
    let moving = if moving > 0 { format!("; {moving} moving data") } else { String::new() };
    let _ = writeln!(
        out,
        "epoch {}  ({} member{}{by_state}{moving}, as seen by {}; N = {})",
        summary["epoch"],
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        summary["via"].as_str().unwrap_or("?"),
        summary["replicas"]
    );
    let line = |c: [&str; 12]| {
        format!(
            "{:<18} {:<22} {:<11} {:>10} {:>10} {:>7} {:>9} {:>8} {:>9} {:>6} {:>9}  {}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]
        )
    };
    let head =
        ["ID", "ADDR", "STATE", "COPIES", "BYTES", "HINTS", "MOVED-IN", "REQ/S", "P99", "TOKENS", "CLOCK", "MOVING"];
    let _ = writeln!(out, "{}", line(head).trim_end());
    for r in busiest_first(rows.clone()).iter().take(shown) {
        let n = |f: &str| r[f].as_u64().map_or_else(|| "-".to_string(), |v| v.to_string());
        // The node's clock against the others', and a mark when it is too far off to write.
        let clock = r["clock_offset_ms"].as_i64().map_or_else(
            || "-".to_string(),
            |ms| format!("{ms:+}ms{}", if r["coordinating_writes"] == false { " OFF" } else { "" }),
        );
        let state = if r["reachable"] == true { r["state"].as_str().unwrap_or("?") } else { "unreachable" };
        // Cut off from the seed: it refuses client requests (its lease).
        let state = if r["coordinating"] == false { format!("{state} CUT") } else { state.to_string() };
        let rate = r["requests_per_s"].as_f64().map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        let moves: Vec<String> = r["moves"].as_array().into_iter().flatten().map(move_text).collect();
        let cells = [
            r["id"].as_str().unwrap_or("?"),
            r["addr"].as_str().unwrap_or("?"),
            &state,
            &n("key_copies"),
            &n("bytes"),
            &n("hints_pending"),
            &n("moved_in"),
            &rate,
            &r["p99_us"].as_u64().map_or_else(|| "-".to_string(), micros),
            &n("tokens"),
            &clock,
            &moves.join("; "),
        ];
        let _ = writeln!(out, "{}", line(cells).trim_end());
    }
    if shown < rows.len() {
        let _ = writeln!(out, "... {} more members (--all lists them, --limit N shows N)", rows.len() - shown);
    }
    let _ = writeln!(out, "key copies: {} ({} per key)", summary["key_copies"], summary["copies_per_key"]);
    // An estimate while some copies are not counted (unreachable members) or counted twice (a
    // join copies keys their owners drop only once it ends): it read 600 for 1 000 keys with 2 of
    // 5 members down, 3 616 for 3 000 after a join, and did not say so (found by trying, 2026-12-06).
    let unreachable = summary["states"]["unreachable"].as_u64().unwrap_or(0);
    let rebalancing = rows.iter().any(|r| r["state"] == "joining" || busy(r));
    let estimate = match (unreachable, rebalancing) {
        (0, false) => String::new(),
        (0, true) => ", an estimate: data is moving, and old owners keep copies until it ends".to_string(),
        (n, _) => format!(", an estimate: the copies of {n} unreachable member(s) are not counted"),
    };
    let _ = writeln!(
        out,
        "keys: {} (key copies of the members not joining / {}{estimate})",
        summary["keys"], summary["copies_per_key"]
    );
    let cut = rows.iter().filter(|r| r["coordinating"] == false).count();
    if cut > 0 {
        let _ = writeln!(
            out,
            "{cut} cut off from the seed (CUT): they refuse client requests (503) until the seed answers them, since \
             it may have removed them; send requests to the others"
        );
    }
    // Members on another view than the asked node's: the table is that node's view, and a split
    // of the members on two epochs (the seed killed a moment after a leave began) showed either
    // side's, without a word (found by a hunt, 2026-12-07).
    let epoch = summary["epoch"].as_u64();
    let mut others: Vec<u64> = rows.iter().filter_map(|r| r["epoch"].as_u64()).filter(|e| Some(*e) != epoch).collect();
    if !others.is_empty() {
        let n = others.len();
        others.sort_unstable();
        others.dedup();
        let list: Vec<String> = others.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "{n} member(s) hold another view than epoch {} (epoch {}): for a moment after each change, as it reaches \
             every member; for longer only while the seed does not answer them and no peer holds a newer one",
            summary["epoch"],
            list.join(", ")
        );
    }
    let stopped_leaving = rows.iter().filter(|r| r["reachable"] != true && r["state"] == "leaving").count();
    if stopped_leaving > 0 {
        let _ = writeln!(
            out,
            "{stopped_leaving} unreachable while leaving: a leave that stopped or stalls before it handed every key on \
             (killed, paused, or its --leave-timeout ran out); keys whose every copy it holds cannot be read once the \
             seed drops it, until it is started again on its data directory, which finishes the leave (a node \
             without one took them with it)"
        );
    }
    // A seed that does not answer freezes the membership: nothing below about expiry or
    // `dkv remove` happens until it does, and the table alone did not say so (found by trying,
    // 2026-12-06).
    let unanswered: Vec<u64> = rows.iter().filter_map(|r| seed_silent_ms(r)).collect();
    if let Some(longest) = unanswered.iter().max() {
        let _ = writeln!(
            out,
            "the seed has not answered {} member(s) for up to {}: no join, leave, expiry or `dkv remove` takes effect \
             until it does; check the seed",
            unanswered.len(),
            micros(longest * 1000)
        );
    }
    if let Some(n) = summary["states"]["unreachable"].as_u64().filter(|n| *n > 0) {
        let _ = writeln!(
            out,
            "{n} unreachable from here: the seed expires a silent member after its TTL, but none while two or more \
             are silent at once; members gone for good go with `dkv remove --seed SEED ID|ADDR...`"
        );
        // Why, for the first few: a member may serve its peers and be unreachable from here
        // alone (a certificate that does not name the address it advertises, which members do
        // not compare and this client does: `unreachable`, with no reason, until 2026-12-07).
        let members = summary["members"].as_array().into_iter().flatten();
        let failed: Vec<&Value> = members.filter(|r| r["reachable"] != true).collect();
        for r in failed.iter().take(3) {
            let why = r["error"].as_str().unwrap_or("no answer");
            let _ = writeln!(out, "  {}: {why}{}", r["addr"].as_str().unwrap_or("?"), certificate_hint(why));
        }
        if failed.len() > 3 {
            let _ = writeln!(out, "  and {} more (--json lists each one's error)", failed.len() - 3);
        }
    }
    out
}

/// What to do when a member's certificate does not name the address it advertises.
fn certificate_hint(why: &str) -> &'static str {
    match why.contains("not valid for name") {
        true => {
            " (members do not compare names, so it may serve them; this client does: give it a certificate that \
             names the address it advertises)"
        }
        false => "",
    }
}

/// How long the seed has not answered this member, when that is well past its heartbeat interval
/// (two intervals and a second): a seed that is down, or cut off from it.
fn seed_silent_ms(r: &Value) -> Option<u64> {
    let unheard = r["seed_unheard_ms"].as_u64()?;
    let beat = r["heartbeat_interval_ms"].as_u64()?;
    (unheard > 2 * beat + 1000).then_some(unheard)
}

fn micros(us: u64) -> String {
    match us {
        0..1000 => format!("{us}us"),
        1000..1_000_000 => format!("{:.1}ms", us as f64 / 1000.0),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n}B"),
        1024..1_048_576 => format!("{:.1}KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1}MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.2}GiB", n as f64 / 1_073_741_824.0),
    }
}

/// `join [####------] 42% 1200 keys 1.2MiB of ~2900 keys 2.8MiB`, or `join done ...`.
fn move_text(m: &Value) -> String {
    let permille = m["permille"].as_u64().unwrap_or(0).min(1000);
    let filled = (permille / 100) as usize;
    let kind = m["kind"].as_str().unwrap_or("?");
    let active = m["active"] == true;
    let (keys, size) = (m["keys"].as_u64().unwrap_or(0), bytes(m["bytes"].as_u64().unwrap_or(0)));
    // A join pulls each key from every member that holds it: what it counts are the copies that
    // came, each key once per holder (a rejoined node of 138 keys showed "414 keys", found by
    // trying, 2026-12-06).
    let unit = if kind == "join" { "key copies" } else { "keys" };
    let planned = match m["planned_keys"].as_u64() {
        Some(p) => {
            let about = if kind == "join" && active { "~" } else { "" };
            let b = m["planned_bytes"].as_u64().map_or_else(String::new, |b| format!(" {}", bytes(b)));
            format!(" of {about}{p} {unit}{b}")
        }
        None => String::new(),
    };
    let done = if active { format!("{}%", permille / 10) } else { "done".to_string() };
    format!("{kind} [{}{}] {done} {keys} {unit} {size}{planned}", "#".repeat(filled), "-".repeat(10 - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(n: usize) -> Value {
        let rows: Vec<Value> = (0..n)
            .map(|i| {
                let state = match i % 100 {
                    0 => "joining",
                    1 => "leaving",
                    _ => "normal",
                };
                let moves = if i == 500 {
                    json!([{ "kind": "join", "active": true, "keys": 120, "bytes": 4096, "planned_keys": 400, "permille": 300 }])
                } else {
                    json!([])
                };
                let cluster = json!({ "id": format!("{i:016x}"), "addr": format!("10.0.{}.{}:8080", i / 250, i % 250),
                    "state": state, "tokens": vec![0; 128] });
                let stats = json!({ "keys": 1000, "bytes": 50_000, "hints_pending": 0, "clock_offset_ms": 1,
                    "coordinating_writes": true, "requests": { "moved_in": 0 },
                    "load": { "requests": 500, "window_ms": 1000, "p99_us": 1800, "hints_pending": 0, "moves": moves } });
                member_row(&cluster, Some(&stats))
            })
            .collect();
        summarize(&json!({ "epoch": 9 }), None, rows, "http://10.0.0.0:8080")
    }

    #[test]
    fn members_on_another_epoch_are_said() {
        let member = json!({ "id": "a", "addr": "10.0.0.1:8080", "state": "normal", "tokens": [1] });
        let stats = |epoch: u64| json!({ "keys": 1, "epoch": epoch, "requests": { "moved_in": 0 }, "load": {} });
        let rows = vec![member_row(&member, Some(&stats(10))), member_row(&member, Some(&stats(9)))];
        let text = render(&summarize(&json!({ "epoch": 10 }), None, rows, "http://10.0.0.1:8080"), None);
        assert!(text.contains("1 member(s) hold another view than epoch 10 (epoch 9)"), "{text}");
        let rows = vec![member_row(&member, Some(&stats(10)))];
        let text = render(&summarize(&json!({ "epoch": 10 }), None, rows, "http://10.0.0.1:8080"), None);
        assert!(!text.contains("another view"), "{text}");
    }

    #[test]
    fn a_member_cut_off_from_the_seed_is_marked_and_counted() {
        let cluster = json!({ "id": "00000000000000aa", "addr": "10.0.0.1:8080", "state": "normal", "tokens": [1] });
        let stats = |coordinating: bool| {
            json!({ "keys": 1, "bytes": 10, "hints_pending": 0, "clock_offset_ms": 0, "coordinating_writes": true,
                "coordinating": coordinating, "requests": { "moved_in": 0 }, "load": {} })
        };
        let rows = vec![member_row(&cluster, Some(&stats(false))), member_row(&cluster, Some(&stats(true)))];
        let text = render(&summarize(&json!({ "epoch": 3 }), None, rows, "http://10.0.0.1:8080"), None);
        assert_eq!(text.matches(" normal CUT ").count(), 1, "{text}");
        assert!(text.contains("1 cut off from the seed (CUT): they refuse client requests (503)"), "{text}");
    }

    #[test]
    fn a_seed_that_does_not_answer_is_said() {
        let member = json!({ "id": "00000000000000aa", "addr": "10.0.0.1:8080", "state": "normal" });
        let stats = |unheard: u64| {
            json!({ "keys": 1, "bytes": 1, "hints_pending": 0, "requests": { "moved_in": 0 }, "load": {},
                "seed_unheard_ms": unheard, "heartbeat_interval_ms": 1000 })
        };
        let rows = vec![member_row(&member, Some(&stats(8059))), member_row(&member, Some(&stats(900)))];
        let text = render(&summarize(&json!({ "epoch": 3 }), None, rows, "http://10.0.0.1:8080"), None);
        assert!(text.contains("the seed has not answered 1 member(s) for up to 8.06s"), "{text}");
        let rows = vec![member_row(&member, Some(&stats(2900)))];
        let text = render(&summarize(&json!({ "epoch": 3 }), None, rows, "http://10.0.0.1:8080"), None);
        assert!(!text.contains("has not answered"), "within two heartbeats and a second: {text}");
    }

    /// A leaver that stopped before its leave ended, and the estimate it makes of `keys:`.
    #[test]
    fn a_member_unreachable_while_leaving_is_explained() {
        let member = |state: &str| json!({ "id": "00000000000000aa", "addr": "10.0.0.1:8080", "state": state });
        let stats = json!({ "keys": 10, "bytes": 10, "hints_pending": 0, "requests": { "moved_in": 0 }, "load": {} });
        let rows = vec![member_row(&member("normal"), Some(&stats)), member_row(&member("leaving"), None)];
        let text = render(&summarize(&json!({ "epoch": 3 }), None, rows, "http://10.0.0.1:8080"), None);
        assert!(text.contains("1 unreachable while leaving: a leave that stopped or stalls before"), "{text}");
        assert!(text.contains("until it is started again on its data directory"), "{text}");
        assert!(text.contains("an estimate: the copies of 1 unreachable member(s) are not counted"), "{text}");
        let mut silent = member_row(&member("normal"), None);
        silent["error"] = json!("cannot reach https://10.0.0.1:8080/stats: invalid peer certificate: certificate not valid for name \"10.0.0.1\"");
        let rows = vec![member_row(&member("normal"), Some(&stats)), silent];
        let text = render(&summarize(&json!({ "epoch": 3 }), None, rows, "http://10.0.0.1:8080"), None);
        assert!(!text.contains("while leaving"), "{text}");
        // Why it is unreachable, and, for a certificate's name, that members may still reach it.
        assert!(text.contains("  10.0.0.1:8080: cannot reach https://10.0.0.1:8080/stats: invalid peer"), "{text}");
        assert!(text.contains("members do not compare names"), "{text}");
        let rows = vec![member_row(&member("normal"), Some(&stats))];
        let text = render(&summarize(&json!({ "epoch": 3 }), None, rows, "http://10.0.0.1:8080"), None);
        assert!(!text.contains("estimate"), "{text}");
    }

    #[test]
    fn a_thousand_members_show_a_page_under_a_count_by_state() {
        let summary = fake(1000);
        let started = std::time::Instant::now();
        let text = render(&summary, Some(20));
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 1 + 20 + 1 + 2, "{text}");
        assert!(lines[0].contains("1000 members: 980 normal, 10 joining, 10 leaving; 1 moving data"), "{}", lines[0]);
        // The member moving data comes first, then the ones that are not normal.
        assert!(
            lines[2].contains("joining")
                && lines[2].contains("join [###-------] 30% 120 key copies 4.0KiB of ~400 key copies")
        );
        assert!(lines[3..21].iter().all(|l| !l.contains(" normal ")), "{text}");
        assert!(text.contains("... 980 more members"), "{text}");
        assert!(text.contains("key copies: 1000000 (3 per key)"), "{text}");
        // The 10 joining members' copies are their owners' too: not counted as keys.
        assert!(
            text.contains("keys: 330000 (key copies of the members not joining / 3, an estimate: data is moving"),
            "{text}"
        );
        assert!(lines[3].contains(" 500.0 ") && lines[3].contains("1.8ms"), "rate and p99: {}", lines[3]);
        assert_eq!(render(&summary, None).lines().count(), 1 + 1 + 1000 + 2);
    }

    #[test]
    fn json_with_a_limit_keeps_the_busiest_members_and_counts_the_others() {
        let summary = fake(1000);
        let page = limited(summary.clone(), Some(5));
        let members = page["members"].as_array().unwrap();
        assert_eq!(members.len(), 5);
        assert_eq!(page["members_left_out"], 995);
        assert_eq!(members[0]["id"], format!("{:016x}", 500), "the member moving data first");
        assert!(members[1..].iter().all(|m| m["state"] != "normal"), "{page:#}");
        // The counts and totals still cover every member.
        assert_eq!(page["states"], summary["states"]);
        assert_eq!(page["key_copies"], summary["key_copies"]);
        assert_eq!(limited(summary.clone(), None), summary);
        assert_eq!(limited(summary.clone(), Some(1000)), summary);
    }

    #[test]
    fn a_small_cluster_lists_every_member_without_a_count() {
        let summary = fake(3);
        let text = render(&summary, Some(20));
        // Member 0 is joining, 1 leaving, 2 normal: mixed, so counted.
        assert!(text.starts_with("epoch 9  (3 members: "), "{text}");
        assert!(!text.contains("more members"));
    }
}
