//! `dkv up`: a whole local cluster as child processes of one command.
//!
//! The children run in their own process group, so the terminal's Ctrl-C reaches only `dkv up`,
//! which then stops the cluster as a whole: every node is asked to stop *without* handing data to
//! the others (`POST /admin/stop`) — stopping a cluster is not N leaves — and then the seed.
//! If `dkv up` itself dies, the kernel kills the children (parent-death signal).

use std::process::Stdio;
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use clap::ValueEnum;

use crate::cli::UpArgs;
use crate::client::Client;

/// Print to stdout, ignoring a closed pipe (whoever reads us may be gone by shutdown).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn spawn(args: &[String]) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).process_group(0).kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and only affects the child being set up.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

async fn wait_healthy(url: &str, child: &mut Child, deadline: Instant) -> Result<(), String> {
    let client = Client::new(url);
    loop {
        if let Ok((StatusCode::OK, _)) = client.raw(Method::GET, "/health", None).await {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{url} exited during start-up ({status}); is the port free?"));
        }
        if Instant::now() > deadline {
            return Err(format!("{url} did not become healthy in time"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn run(args: UpArgs) -> i32 {
    match run_inner(args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dkv up: {e}");
            1
        }
    }
}

async fn run_inner(args: UpArgs) -> Result<(), String> {
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    if args.base_port.checked_add(args.nodes - 1).is_none() {
        return Err("--base-port + --nodes exceeds the port range".into());
    }
    let seed_addr = format!("127.0.0.1:{}", args.seed_port);
    let hb = humantime::format_duration(args.heartbeat_interval).to_string();
    let ttl = humantime::format_duration(args.node_ttl).to_string();
    let mut seed = spawn(&["seed".into(), "--listen".into(), seed_addr.clone(), "--node-ttl".into(), ttl])
        .map_err(|e| format!("starting the seed: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    wait_healthy(&format!("http://{seed_addr}"), &mut seed, deadline).await?;

    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let addr = format!("127.0.0.1:{}", args.base_port + i);
        let mut argv: Vec<String> = vec![
            "node".into(),
            "--listen".into(),
            addr.clone(),
            "--advertise".into(),
            addr.clone(),
            "--seed".into(),
            seed_addr.clone(),
            "--heartbeat-interval".into(),
            hb.clone(),
        ];
        if let Some(base) = args.resp_base_port {
            let port = base.checked_add(i).ok_or("--resp-base-port + --nodes exceeds the port range")?;
            argv.extend(["--resp-listen".into(), format!("127.0.0.1:{port}")]);
        }
        if let Some(dir) = &args.data_dir {
            let fsync = args.fsync.to_possible_value().expect("no skipped variants").get_name().to_string();
            argv.extend(["--data-dir".into(), dir.join(format!("node-{i}")).display().to_string()]);
            argv.extend(["--fsync".into(), fsync]);
        }
        let child = spawn(&argv).map_err(|e| format!("starting node {i}: {e}"))?;
        nodes.push((format!("http://{addr}"), child));
    }
    for (url, child) in &mut nodes {
        if let Err(e) = wait_healthy(url, child, deadline).await {
            stop_all(&mut nodes, &mut seed).await;
            return Err(e);
        }
    }

    say!("dkv cluster is up: seed http://{seed_addr}, {} nodes", nodes.len());
    for (i, (url, _)) in nodes.iter().enumerate() {
        match args.resp_base_port {
            Some(base) => say!("  node {url}  (RESP: redis-cli -p {})", base + i as u16),
            None => say!("  node {url}"),
        }
    }
    let (a, b) = (&nodes[0].0, &nodes[nodes.len().min(2) - 1].0);
    say!("try:\n  curl -X PUT -d 'John Doe' '{a}/put?key=user_123'\n  curl '{b}/get?key=user_123'");
    say!("Ctrl-C stops the whole cluster.");

    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    say!("stopping the cluster");
    stop_all(&mut nodes, &mut seed).await;
    Ok(())
}

async fn stop_all(nodes: &mut [(String, Child)], seed: &mut Child) {
    for (url, _) in nodes.iter() {
        let _ = Client::new(url).raw(Method::POST, "/admin/stop", None).await;
    }
    for (url, child) in nodes.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
            eprintln!("dkv up: {url} did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
    if let Some(pid) = seed.id() {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(5), seed.wait()).await.is_err() {
        let _ = seed.kill().await;
    }
}
