//! TLS with real clients and real nodes: certificates made here with rcgen; `curl --cacert`,
//! `redis-cli --tls`, redis-py with `ssl=True` and the `dkv` client against a TLS cluster whose
//! nodes talk mutual TLS; a node whose certificate another CA signed, refused by its peers (and
//! the refusals in the logs of both sides); a certificate replaced and reloaded on SIGHUP.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A CA that writes its certificate and the certificates it signs into `dir`.
struct Ca {
    dir: PathBuf,
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), issuer.pem()).unwrap();
        Ca { dir: dir.to_path_buf(), name: name.to_string(), issuer }
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A certificate for 127.0.0.1 and localhost, good for serving and for calling peers;
    /// returns (certificate file, key file).
    fn sign(&self, cn: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (self.dir.join(format!("{cn}.pem")), self.dir.join(format!("{cn}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// One file holding the certificates of `cas`: an intruder that trusts the cluster's CA beside
/// the one that signed its own certificate (a node whose own certificate its `--tls-peer-ca`
/// did not sign refuses to start).
fn bundle(dir: &Path, cas: &[&Ca]) -> PathBuf {
    let pems: Vec<String> = cas.iter().map(|ca| std::fs::read_to_string(ca.cert_file()).unwrap()).collect();
    let path = dir.join("bundle-ca.pem");
    std::fs::write(&path, pems.concat()).unwrap();
    path
}

fn tls_flags(cert: &Path, key: &Path, peer_ca: &Path) -> Vec<String> {
    let p = |p: &Path| p.display().to_string();
    ["--tls-cert".into(), p(cert), "--tls-key".into(), p(key), "--tls-peer-ca".into(), p(peer_ca)].to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text.trim().to_string())
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_peers_talk_tls_with_curl_redis_cli_redis_py_and_dkv() {
    let dir = temp_root("tls");
    let ca = Ca::new(&dir, "cluster");
    let (cert, key) = ca.sign("node");
    let flags = tls_flags(&cert, &key, &ca.cert_file());
    // N=3 on 3 nodes: every write and read goes to peers too, over mutual TLS.
    let c = Cluster::start_tls(3, &strs(&flags), &ca.cert_file(), &dir).await;
    let cafile = ca.cert_file().display().to_string();
    let url = |i: usize, pq: &str| format!("https://{}{pq}", c.nodes[i].addr);

    let (ok, out) = output(
        tool("curl").args(["-sS", "--cacert", &cafile, "-X", "PUT", "-d", "over tls"]).arg(url(0, "/put?key=k")),
    );
    assert!(ok && out.is_empty(), "{out}");
    let (ok, out) = output(tool("curl").args(["-sS", "--cacert", &cafile]).arg(url(1, "/get?key=k")));
    assert_eq!((ok, out.as_str()), (true, "over tls"));
    // Without the CA curl refuses the node; in the clear the node refuses curl.
    let (ok, out) = output(tool("curl").args(["-sS"]).arg(url(2, "/get?key=k")));
    assert!(!ok, "an unknown CA must fail: {out}");
    let (ok, out) =
        output(tool("curl").args(["-sS", "--max-time", "5"]).arg(format!("http://{}/health", c.nodes[2].addr)));
    assert!(!ok, "plain HTTP on a TLS port must fail: {out}");

    // redis-cli (Debian's is built with TLS) and redis-py with ssl=True.
    let resp = c.nodes[2].resp.clone().unwrap();
    let (host, port) = resp.rsplit_once(':').unwrap();
    let cli = |args: &[&str]| {
        output(tool("redis-cli").args(["--tls", "--cacert", &cafile, "-h", host, "-p", port]).args(args))
    };
    assert_eq!(cli(&["GET", "k"]), (true, "over tls".to_string()));
    assert_eq!(cli(&["SET", "r", "via resp"]), (true, "OK".to_string()));
    // DBSIZE asks every member's /stats over TLS and divides the copies by N. The SET was
    // acknowledged at W=2, so its third copy may still be on its way: poll until it lands.
    eventually(Duration::from_secs(10), "DBSIZE to count k and r over TLS", || async {
        (cli(&["DBSIZE"]) == (true, "2".to_string())).then_some(())
    })
    .await;
    let script = r#"
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), ssl=True, ssl_ca_certs=sys.argv[2], socket_timeout=20)
assert r.get("r") == b"via resp"
assert r.set("py", "tls") is True
# Replies beyond what the socket takes at once: each one's end must leave the TLS session's
# buffer too (it stayed there, unflushed, until 2026-12-06).
big = b"x" * (1 << 20)
assert r.set("big", big) is True
p = r.pipeline(transaction=False)
for _ in range(24):
    p.get("big")
assert all(v == big for v in p.execute())
r.delete("big")
print("ok")
"#;
    let (ok, out) = output(python3_redis().args(["-c", script, port, &cafile]));
    assert!(ok && out.contains("ok"), "redis-py: {out}");

    // The dkv client: --cacert for https:// nodes, and a clear error without it.
    let node = url(0, "");
    let (ok, out) = output(dkv().args(["get", "py", "--node", &node, "--cacert", &cafile]));
    assert_eq!((ok, out.as_str()), (true, "tls"));
    let (ok, out) = output(dkv().args(["get", "py", "--node", &node]));
    assert!(!ok && out.contains("--cacert"), "{out}");
    let (ok, out) = output(dkv().args(["status", "--node", &node, "--cacert", &cafile]));
    assert!(ok && out.matches("normal").count() == 3, "{out}");
    // dkv bench over TLS, on both ports.
    for protocol in [&["--protocol", "http"][..], &["--protocol", "resp", "--resp-port", port]] {
        let load = ["bench", "--node", &node, "--cacert", &cafile, "-c", "4", "-n", "200", "--keys", "50"];
        let (ok, out) = output(dkv().args(load).args(protocol));
        assert!(ok && out.contains("(200 in") && out.contains("errors      0"), "{protocol:?}: {out}");
    }
    let (ok, out) = output(dkv().args(["bench", "--node", &node, "-n", "10"]));
    assert!(!ok && out.contains("--cacert"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_certificate_another_ca_signed_is_refused_by_its_peers() {
    let dir = temp_root("tls-other-ca");
    let ca = Ca::new(&dir, "cluster");
    let (cert, key) = ca.sign("node");
    let mut c = Cluster::start_tls(2, &strs(&tls_flags(&cert, &key, &ca.cert_file())), &ca.cert_file(), &dir).await;

    c.client(0).put(b"before", "v").await.unwrap();

    // The intruder trusts the cluster's CA, but its own certificate comes from another.
    let other = Ca::new(&dir, "other");
    let (bad_cert, bad_key) = other.sign("intruder");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args: Vec<String> = ["node", "--listen", &addr, "--advertise", &addr, "--seed", &c.seed.addr]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--heartbeat-interval", HEARTBEAT, "--request-timeout", "1s"].map(String::from));
    // Its own --tls-peer-ca did not sign its certificate: it refuses to start, as every peer
    // would refuse it (it started, and failed every call: found by a hunt, 2026-12-07).
    let alone = [args.clone(), tls_flags(&bad_cert, &bad_key, &ca.cert_file())].concat();
    let mut child = dkv().args(&alone).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let exited = eventually(Duration::from_secs(10), "the node to refuse its certificate", || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await;
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(exited.code(), Some(1), "{stderr}");
    assert!(stderr.contains("intruder.pem") && stderr.contains("the CA in --tls-peer-ca"), "{stderr}");
    args.extend(tls_flags(&bad_cert, &bad_key, &bundle(&dir, &[&ca, &other])));
    let bad_log = std::fs::File::create(dir.join("intruder.log")).unwrap();
    let child = dkv().args(&args).stderr(bad_log).spawn().unwrap();
    c.nodes.push(Proc { child, addr: addr.clone(), args, resp: None });

    // It registers with the seed (plain HTTP), but no member takes its connections or answers
    // its calls: it cannot pull what it would own, and a write through it fails.
    let seed = c.seed_client();
    eventually(Duration::from_secs(10), "the intruder to register", || async {
        let v = seed.json("/nodes").await.ok()?;
        (v["nodes"].as_array()?.len() == 3).then_some(())
    })
    .await;
    let intruder = dkv::client::Client::new(&format!("https://{addr}")).with_cacert(Some(&other.cert_file())).unwrap();
    let (status, body) = intruder.raw(http::Method::PUT, "/put?key=k", Some("v".into())).await.unwrap();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    // The members still serve each other.
    assert_eq!(c.client(1).get(b"before").await.unwrap().as_deref(), Some(&b"v"[..]));
    let view = seed.json("/nodes").await.unwrap();
    let state = view["nodes"].as_array().unwrap().iter().find(|m| m["addr"] == addr.as_str()).unwrap()["state"].clone();
    assert_eq!(state, "joining", "it never pulled its ranges: {view}");

    // Both sides say why.
    eventually(Duration::from_secs(10), "the refusals in the logs", || async {
        let members = log(&dir, "node-0.log") + &log(&dir, "node-1.log");
        let theirs = log(&dir, "intruder.log");
        (members.contains("TLS handshake refused") && members.contains("UnknownIssuer") && theirs.contains("UnknownCA"))
            .then_some(())
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The common name of the certificate a new TLS connection to `addr` sees.
fn served_name(addr: &str, ca: &Path) -> String {
    let script = r#"
import socket, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection((host, int(port))) as s:
    with ctx.wrap_socket(s, server_hostname=host) as t:
        print(dict(x[0] for x in t.getpeercert()["subject"])["commonName"])
"#;
    let (ok, out) = output(Command::new("/usr/bin/python3").args(["-c", script, addr, &ca.display().to_string()]));
    assert!(ok, "{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_for_new_connections_and_keeps_it_when_a_file_is_bad() {
    let dir = temp_root("tls-reload");
    let ca = Ca::new(&dir, "cluster");
    let (first, first_key) = ca.sign("first");
    let (cert, key) = (dir.join("node.pem"), dir.join("node.key"));
    std::fs::copy(&first, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    let mut c = Cluster::start_tls(1, &strs(&tls_flags(&cert, &key, &ca.cert_file())), &ca.cert_file(), &dir).await;
    let addr = c.nodes[0].addr.clone();
    assert_eq!(served_name(&addr, &ca.cert_file()), "first");

    // A certificate whose key is elsewhere: the reload fails and the old one stays.
    let (second, second_key) = ca.sign("second");
    std::fs::copy(&second, &cert).unwrap();
    c.nodes[0].signal(libc::SIGHUP);
    eventually(Duration::from_secs(10), "the failed reload in the log", || async {
        log(&dir, "node-0.log").contains("not reloaded").then_some(())
    })
    .await;
    assert_eq!(served_name(&addr, &ca.cert_file()), "first");
    assert!(c.nodes[0].child.try_wait().unwrap().is_none(), "SIGHUP does not stop the node");

    // Both files replaced: new connections see the new certificate.
    std::fs::copy(&second_key, &key).unwrap();
    c.nodes[0].signal(libc::SIGHUP);
    eventually(Duration::from_secs(10), "the new certificate on a new connection", || async {
        (served_name(&addr, &ca.cert_file()) == "second").then_some(())
    })
    .await;
    assert!(log(&dir, "node-0.log").contains("TLS certificates reloaded"));
    assert_eq!(c.client(0).json("/health").await.unwrap()["status"], "normal");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_clients_need_a_certificate_it_signed() {
    let dir = temp_root("tls-client-ca");
    let ca = Ca::new(&dir, "cluster");
    let clients = Ca::new(&dir, "clients");
    let (cert, key) = ca.sign("node");
    let mut flags = tls_flags(&cert, &key, &ca.cert_file());
    flags.extend(["--tls-client-ca".to_string(), clients.cert_file().display().to_string()]);
    // Two nodes: their peers' certificates come from the cluster CA, not the clients' one.
    let c = Cluster::launch_tls(2, &strs(&flags), &ca.cert_file(), &dir).await;
    let seed = c.seed_client();
    eventually(Duration::from_secs(20), "2 normal members", || async {
        let v = seed.json("/nodes").await.ok()?;
        let nodes = v["nodes"].as_array()?;
        (nodes.len() == 2 && nodes.iter().all(|m| m["state"] == "normal")).then_some(())
    })
    .await;
    let (app, app_key) = clients.sign("app");
    let cafile = ca.cert_file().display().to_string();
    let url = format!("https://{}/put?key=k", c.nodes[0].addr);
    let (ok, out) = output(tool("curl").args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        &cafile,
        "-X",
        "PUT",
        "-d",
        "v",
        &url,
    ]));
    assert!(!ok || out == "403", "no client certificate: {out}");
    let (ok, out) =
        output(tool("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", &cafile]).args([
            "--cert",
            &app.display().to_string(),
            "--key",
            &app_key.display().to_string(),
            "-X",
            "PUT",
            "-d",
            "v",
            &url,
        ]));
    assert_eq!((ok, out.as_str()), (true, "204"));
    let resp = c.nodes[1].resp.clone().unwrap();
    let (host, port) = resp.rsplit_once(':').unwrap();
    let tls = ["--tls", "--cacert", &cafile, "-h", host, "-p", port];
    let (_, out) = output(tool("redis-cli").args(tls).args(["GET", "k"]));
    assert_ne!(out, "v", "RESP without a client certificate must fail");
    let (app, app_key) = (app.display().to_string(), app_key.display().to_string());
    let (ok, out) = output(tool("redis-cli").args(tls).args(["--cert", &app, "--key", &app_key, "GET", "k"]));
    assert_eq!((ok, out.as_str()), (true, "v"));
    // The dkv client: refused without a certificate, served with one.
    let node = format!("https://{}", c.nodes[1].addr);
    let (ok, out) = output(dkv().args(["get", "k", "--node", &node, "--cacert", &cafile]));
    assert!(!ok && out.contains("certificate"), "{out}");
    let mine = ["--client-cert", &app, "--client-key", &app_key];
    let (ok, out) = output(dkv().args(["get", "k", "--node", &node, "--cacert", &cafile]).args(mine));
    assert_eq!((ok, out.as_str()), (true, "v"));
    let (ok, out) = output(dkv().args(["status", "--node", &node, "--cacert", &cafile]).args(mine));
    assert!(ok && out.matches("normal").count() == 2, "{out}");
    let load = [
        "bench",
        "--node",
        &node,
        "--cacert",
        &cafile,
        "-c",
        "4",
        "-n",
        "100",
        "--protocol",
        "resp",
        "--resp-port",
        port,
    ];
    let (ok, out) = output(dkv().args(load).args(mine));
    assert!(ok && out.contains("(100 in") && out.contains("errors      0"), "{out}");
    let (ok, out) = output(dkv().args(["health", "--url", &format!("{node}/health"), "--cacert", &cafile]).args(mine));
    assert!(ok, "{out}");
    let (ok, out) = output(dkv().args(["get", "k", "--node", &node, "--cacert", &cafile, "--client-cert", &app]));
    assert!(!ok && out.contains("--client-key"), "a certificate without its key: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sum of the seed's heartbeat counters answered over `encoding`, from its `/metrics`.
async fn heartbeats_via(seed: &dkv::client::Client, encoding: &str) -> Option<u64> {
    let (status, body) = seed.raw(http::Method::GET, "/metrics", None).await.ok()?;
    assert_eq!(status, 200);
    let label = format!("encoding=\"{encoding}\"");
    let lines = String::from_utf8_lossy(&body).into_owned();
    let counts = lines.lines().filter(|l| l.starts_with("dkv_seed_heartbeats_total{") && l.contains(&label));
    Some(counts.filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_over_tls_takes_members_only_over_tls_and_only_with_the_cluster_cas_certificates() {
    let dir = temp_root("tls-seed");
    let ca = Ca::new(&dir, "cluster");
    let (cert, key) = ca.sign("node");
    let (seed_cert, seed_key) = ca.sign("seed");
    let secret = ["--cluster-secret", "s3cret"].map(String::from);
    let node_flags = [tls_flags(&cert, &key, &ca.cert_file()), secret.to_vec()].concat();
    let seed_flags = [tls_flags(&seed_cert, &seed_key, &ca.cert_file()), secret.to_vec()].concat();
    let mut c = Cluster::launch_tls_seed(2, &strs(&node_flags), &strs(&seed_flags), &ca.cert_file(), &dir).await;
    assert!(c.seed.addr.starts_with("https://"), "the nodes are given --seed {}", c.seed.addr);
    c.wait_normal(2).await;
    c.client(0).put(b"k", "v").await.unwrap();
    assert_eq!(c.client(1).get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]));

    // The members' heartbeats travel over the transport, inside TLS.
    let seed = c.seed_client();
    eventually(Duration::from_secs(10), "heartbeats over the transport", || async {
        (heartbeats_via(&seed, "transport").await? > 0).then_some(())
    })
    .await;

    // Anyone who trusts the cluster CA may read the membership; changing it takes a member's
    // certificate as well as the secret. In the clear, the port answers nothing.
    let host = c.seed.addr.trim_start_matches("https://").to_string();
    let cafile = ca.cert_file().display().to_string();
    let (ok, out) = output(tool("curl").args(["-sS", "--cacert", &cafile]).arg(format!("https://{host}/nodes")));
    assert!(ok && out.contains("\"normal\""), "{out}");
    let (ok, out) = output(tool("curl").args(["-sS", "--cacert", &cafile, "-w", "\n%{http_code}"]).args([
        "-X",
        "POST",
        "-H",
        "x-dkv-secret: s3cret",
        "-H",
        "content-type: application/json",
        "-d",
        "{\"addr\":\"127.0.0.1:1\"}",
        &format!("https://{host}/register"),
    ]));
    assert!(ok && out.ends_with("403") && out.contains("only from members"), "{}", &out[..out.len().min(300)]);
    let (ok, out) = output(tool("curl").args(["-sS", "--max-time", "5"]).arg(format!("http://{host}/nodes")));
    assert!(!ok, "plain HTTP on the seed's TLS port must fail: {out}");
    // Each such connection is worth a line in the seed's log, but whoever connects sets their
    // rate: a flood of them gets one line a second, the next one saying how many were left out.
    let plain_hello = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /nodes HTTP/1.1\r\nhost: seed\r\n\r\n").unwrap();
        let _ = s.read(&mut [0u8; 64]); // the seed closes the connection: the attempt is over
    };
    for _ in 0..40 {
        plain_hello();
    }
    eventually(Duration::from_secs(10), "a line saying how many failed handshakes were not logged", || async {
        plain_hello();
        log(&dir, "seed.log").contains("more like it in the last").then_some(())
    })
    .await;
    let failed = log(&dir, "seed.log").matches("TLS handshake failed").count();
    assert!(failed < 12, "{failed} lines for about 45 failed handshakes: the log is not bounded");
    // A heartbeat line opened without a member's certificate is refused (its hello is not
    // waited for here: the refusal is logged as soon as the first byte says "transport").
    let script = r#"
import socket, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection((host, int(port)), timeout=15) as s:
    with ctx.wrap_socket(s, server_hostname=host) as t:
        t.sendall(b"\0DKV")
print("sent")
"#;
    let (ok, out) = output(Command::new("/usr/bin/python3").args(["-c", script, &host, &cafile]));
    assert!(ok && out.ends_with("sent"), "{out}");
    eventually(Duration::from_secs(10), "the seed to refuse a heartbeat line without a certificate", || async {
        log(&dir, "seed.log").contains("refused a heartbeat line").then_some(())
    })
    .await;

    // A node that calls the seed in the clear, and one whose certificate another CA signed, are
    // both refused at the handshake and never join; each log says why.
    let other = Ca::new(&dir, "other");
    let (bad_cert, bad_key) = other.sign("intruder");
    let callers = [
        ("plain", host.clone(), node_flags.clone()),
        (
            "intruder",
            c.seed.addr.clone(),
            [tls_flags(&bad_cert, &bad_key, &bundle(&dir, &[&ca, &other])), secret.to_vec()].concat(),
        ),
    ];
    for (name, seed_arg, flags) in callers {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> =
            ["node", "--listen", &addr, "--advertise", &addr, "--seed", &seed_arg].map(String::from).to_vec();
        args.extend(["--heartbeat-interval", HEARTBEAT, "--request-timeout", "1s"].map(String::from));
        args.extend(flags);
        let log_file = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = dkv().args(&args).stderr(log_file).spawn().unwrap();
        c.nodes.push(Proc { child, addr, args, resp: None });
    }
    eventually(Duration::from_secs(10), "both refusals in the logs", || async {
        let (plain, intruder, seed_log) = (log(&dir, "plain.log"), log(&dir, "intruder.log"), log(&dir, "seed.log"));
        let refused = "registering with the seed failed";
        (plain.contains(refused) && intruder.contains(refused) && seed_log.contains("UnknownIssuer")).then_some(())
    })
    .await;
    let view = seed.json("/nodes").await.unwrap();
    assert_eq!(view["nodes"].as_array().unwrap().len(), 2, "{view}");

    // SIGHUP reloads the seed's certificate for new connections; the members stay.
    assert_eq!(served_name(&host, &ca.cert_file()), "seed");
    let (next, next_key) = ca.sign("seed-renewed");
    std::fs::copy(&next, &seed_cert).unwrap();
    std::fs::copy(&next_key, &seed_key).unwrap();
    c.seed.signal(libc::SIGHUP);
    eventually(Duration::from_secs(10), "the renewed certificate on a new connection", || async {
        (served_name(&host, &ca.cert_file()) == "seed-renewed").then_some(())
    })
    .await;
    assert!(log(&dir, "seed.log").contains("TLS certificates reloaded"));
    let before = heartbeats_via(&seed, "transport").await.unwrap();
    eventually(Duration::from_secs(10), "heartbeats after the reload", || async {
        (heartbeats_via(&seed, "transport").await? > before).then_some(())
    })
    .await;
    let view = seed.json("/nodes").await.unwrap();
    let members = view["nodes"].as_array().unwrap();
    assert!(members.len() == 2 && members.iter().all(|m| m["state"] == "normal"), "{view}");

    // A node told to call the seed over TLS without certificates of its own stops at once.
    let addr = format!("127.0.0.1:{}", free_port());
    let (ok, out) = output(dkv().args(["node", "--listen", &addr, "--seed", &c.seed.addr]));
    assert!(!ok && out.contains("needs --tls-cert"), "{out}");
    let (ok, out) = output(dkv().args(["node", "--listen", &addr, "--seed", &format!("ftp://{host}")]));
    assert!(!ok && out.contains("http:// or https://"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
