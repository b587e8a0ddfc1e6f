use std::sync::Arc;

use clap::Parser;
use dkv::cli::{Cli, Command, FsyncPolicy};
use dkv_node::config::{ClientLimits, Fsync, Tls};
use dkv_node::{NodeConfig, Stop};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs go to stderr, and a line that cannot be written is dropped. tracing's formatter reports a
/// failed write with `eprintln!`, which panics on the same closed stderr: a node started with
/// `2>&1 | head -2` (or under a log collector that went away) lost whichever task was logging at
/// the time, its heartbeats among them, and served on half working while the seed expired it
/// (found by a hunt, 2026-12-07).
fn init_logs(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .init();
}

/// A panic ends a server process. Tokio catches a panic in a task and runs the others on, so a
/// node whose heartbeat or movement task panicked would keep answering clients while the seed
/// expired it and its keys read "not found" elsewhere. A process that ends is visible, and
/// whatever supervises it starts it again, whole (its data directory keeps its keys).
fn end_on_panic(role: &'static str) {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        dkv::errln!(
            "dkv {role}: a panic ends the process: a {role} with one of its tasks gone would serve on half working"
        );
        std::process::abort();
    }));
}

/// SIGTERM or Ctrl-C.
async fn terminated() {
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn exit_code<E: std::fmt::Display>(role: &str, result: Result<(), E>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            dkv::errln!("dkv {role}: {e}");
            1
        }
    }
}

/// Raise the soft limit on open files to the hard one: a node serves up to `--max-connections`
/// clients on each listener, and the common soft limit of 1024 would refuse them with "too many
/// open files" long before. Warns when even the hard limit is below what the flags allow.
fn raise_open_files(wanted: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit with pointers to a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        if lim.rlim_cur < lim.rlim_max && libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    // `rlim_t` is a u64 on the targets dkv is built for; the cast keeps others compiling.
    #[allow(clippy::unnecessary_cast)]
    let open_files = lim.rlim_cur as u64;
    if open_files < wanted {
        tracing::warn!(
            open_files,
            wanted,
            "the open-file limit is below what --max-connections allows; raise it (ulimit -n) or lower --max-connections"
        );
    }
}

/// Transparent huge pages off for this process. With them, mimalloc backs its arenas with 2 MiB
/// pages that the kernel zeroes whole: 100 nodes starting at once spent 58% of their CPU in
/// `clear_page_erms`, and an idle node held 86 MiB instead of 34. Measured with `bench/ab.sh` on
/// the replicated rows, throughput and CPU per request did not move (GET 0.99×, PUT 1.00×).
fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// The node's certificates, loaded now so that a bad file stops the start with its reason.
fn load_tls(a: &dkv::cli::NodeArgs) -> Result<Option<Arc<Tls>>, String> {
    match a.tls_files()? {
        Some(files) => Ok(Some(Arc::new(Tls::load(files).map_err(|e| format!("TLS: {e}"))?))),
        None => Ok(None),
    }
}

/// The seed's certificates, loaded and reloaded as a node's are (`dkv_node::config::Tls`).
#[derive(Debug)]
struct SeedCerts(Arc<Tls>);

impl dkv_seed::SeedTls for SeedCerts {
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.0.shared_acceptor()
    }

    fn is_member(&self, certs: Option<&[tokio_rustls::rustls::pki_types::CertificateDer<'_>]>) -> bool {
        self.0.is_peer(certs)
    }
}

/// SIGHUP reads the certificate files again: new connections use the new ones. A file that
/// does not load keeps the old ones, and says why. Without TLS a SIGHUP is only logged (it
/// would otherwise end the process).
fn reload_on_hangup(tls: Option<Arc<Tls>>) {
    let Ok(mut hangups) = signal(SignalKind::hangup()) else { return };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match &tls {
                None => tracing::info!("SIGHUP: no TLS certificates to reload"),
                Some(tls) => match tls.reload() {
                    Ok(()) => tracing::info!(cert = %tls.files().cert.display(), "SIGHUP: TLS certificates reloaded"),
                    Err(e) => tracing::error!("SIGHUP: TLS certificates not reloaded, the old ones stay in use: {e}"),
                },
            }
        }
    });
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, i32> {
    dkv_node::transport::listener::bind(addr).map_err(|e| {
        dkv::errln!("dkv: cannot listen on {addr}: {e}");
        1
    })
}

fn main() {
    no_huge_pages();
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Seed(_) = cli.command {
        // The seed answers one small request per member per heartbeat interval, and chooses
        // tokens on the blocking pool. With one worker no second thread is woken for each
        // heartbeat: 100 idle nodes cost it about a tenth less (1.60% of a core against
        // 1.73–1.85%, alternated). A single-threaded runtime cost it the same and the nodes a
        // third more: its answers came later, after the nodes had gone back to sleep.
        runtime.worker_threads(1);
    }
    let runtime = runtime.enable_all().build().unwrap_or_else(|e| {
        dkv::errln!("dkv: cannot start the async runtime: {e}");
        std::process::exit(1);
    });
    let code = runtime.block_on(run(cli));
    std::process::exit(code);
}

async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Seed(a) => {
            init_logs("info");
            end_on_panic("seed");
            let tls = match a.tls_files().map(Tls::load).transpose() {
                Ok(tls) => tls.map(Arc::new),
                Err(e) => {
                    dkv::errln!("dkv seed: TLS: {e}");
                    return 1;
                }
            };
            reload_on_hangup(tls.clone());
            match bind(a.listen).await {
                Ok(listener) => {
                    let config = dkv_seed::SeedConfig {
                        node_ttl: a.node_ttl,
                        cluster_secret: a.cluster_secret,
                        cluster_name: a.cluster_name,
                        max_connections: a.max_connections as usize,
                        tls: tls.map(|tls| Arc::new(SeedCerts(tls)) as Arc<dyn dkv_seed::SeedTls>),
                        data_dir: a.data_dir,
                        read_timeout: a.read_timeout,
                        new_cluster: a.new_cluster,
                    };
                    exit_code("seed", dkv_seed::run(config, listener, terminated()).await)
                }
                Err(code) => code,
            }
        }
        Command::Node(a) => {
            // The storage engine's own progress lines (flushes, compactions) are debug detail.
            init_logs("info,fjall=warn,lsm_tree=warn");
            end_on_panic("node");
            let checked = a.check().and_then(|()| Ok((a.client_auth()?, load_tls(&a)?, a.seed_address()?)));
            let (client_auth, tls, (seed, seed_tls)) = match checked {
                Ok(checked) => checked,
                Err(e) => {
                    dkv::errln!("dkv node: {e}");
                    std::process::exit(1);
                }
            };
            reload_on_hangup(tls.clone());
            for warning in a.warnings() {
                tracing::warn!("{warning}");
            }
            let (write_quorum, read_quorum) = a.quorums();
            let config = NodeConfig {
                listen: a.listen,
                advertise: a.advertise,
                seed,
                seed_tls,
                heartbeat_interval: a.heartbeat_interval,
                leave_timeout: a.leave_timeout,
                join_timeout: a.join_timeout,
                request_timeout: a.request_timeout,
                hedge_after: a.hedge_after,
                max_clock_offset: a.max_clock_offset,
                max_key_bytes: a.max_key_size,
                max_value_bytes: a.max_value_size,
                vnodes: a.vnodes.into(),
                replicas: a.replication.into(),
                write_quorum,
                read_quorum,
                max_hints: a.max_hints,
                max_hint_bytes: a.max_hint_bytes,
                hint_max_age: a.hint_max_age,
                anti_entropy_interval: a.anti_entropy_interval,
                move_rate: a.move_rate as u64,
                tombstone_grace: a.tombstone_grace,
                cluster_secret: a.cluster_secret,
                fsync: match a.fsync {
                    FsyncPolicy::Always => Fsync::Always,
                    FsyncPolicy::Periodic => Fsync::Periodic(a.fsync_interval),
                },
                data_dir: a.data_dir,
                rejoin: a.rejoin,
                resp_listen: a.resp_listen,
                cluster_name: a.cluster_name,
                limits: ClientLimits {
                    max_connections: a.max_connections as usize,
                    read_timeout: a.read_timeout,
                    idle_timeout: Some(a.idle_timeout).filter(|t| !t.is_zero()),
                    max_query_buffer: a.max_query_buffer,
                    max_client_memory: a.max_client_memory,
                    max_pipelined: a.max_pipelined as usize,
                },
                keys_limit: a.keys_limit,
                busy_poll: a.busy_poll,
                client_auth,
                tls,
            };
            let listeners = if config.resp_listen.is_some() { 2 } else { 1 };
            raise_open_files(listeners * config.limits.max_connections as u64 + 1024);
            // A node with a data directory comes back with its data, so SIGTERM only stops it;
            // without one (or with --leave-on-stop) SIGTERM hands its keys to the others.
            let on_term = if config.data_dir.is_some() && !a.leave_on_stop { Stop::Now } else { Stop::Leave };
            match bind(config.listen).await {
                Ok(listener) => {
                    let on_signal = async move {
                        terminated().await;
                        on_term
                    };
                    exit_code("node", dkv_node::run(config, listener, on_signal).await)
                }
                Err(code) => code,
            }
        }
        Command::Up(a) => {
            init_logs("warn");
            dkv::up::run(a).await
        }
        Command::Get(a) => dkv::commands::get(a).await,
        Command::Put(a) => dkv::commands::put(a).await,
        Command::Del(a) => dkv::commands::del(a).await,
        Command::Ttl(a) => dkv::commands::ttl(a).await,
        Command::Status(a) => dkv::status::status(a).await,
        Command::Scan(a) => dkv::keys::scan(a).await,
        Command::Where(a) => dkv::keys::where_is(a).await,
        Command::Health(a) => dkv::commands::health(a).await,
        Command::Leave(a) => dkv::commands::leave(a).await,
        Command::Remove(a) => dkv::commands::remove(a).await,
        Command::Bench(a) => {
            init_logs("warn");
            dkv::bench::run(a).await
        }
    }
}
