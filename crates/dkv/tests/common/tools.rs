//! The outside programs some tests run (redis-cli, redis-py, chromium, curl, libfaketime), each
//! with the Debian package that brings it. A test whose tool is missing fails at once with a
//! message that names that package and `scripts/setup.sh`, which installs all of them, rather
//! than with `No such file or directory` or Python's `ModuleNotFoundError`.

use std::process::Command;

/// Program → the Debian package that installs it.
const PACKAGES: &[(&str, &str)] =
    &[("redis-cli", "redis-tools"), ("redis-benchmark", "redis-tools"), ("chromium", "chromium"), ("curl", "curl")];

/// libfaketime's preload library, from Debian's `faketime`.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn missing(what: &str, package: &str) -> ! {
    panic!(
        "{what} is needed for this test: install {package} (scripts/setup.sh installs everything the tests need; \
         or apt-get install {package})"
    )
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// A command for `program`, one of [`PACKAGES`]; panics naming its package if it is not installed.
pub fn tool(program: &str) -> Command {
    let package = PACKAGES.iter().find(|(p, _)| *p == program).map_or(program, |(_, pkg)| pkg);
    if !on_path(program) {
        missing(program, package);
    }
    Command::new(program)
}

/// Run `redis-cli -h HOST -p PORT` for `addr` (host:port) with `args`, whatever its exit status.
pub fn redis_cli_run(addr: &str, args: &[&str]) -> std::process::Output {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    tool("redis-cli").args(["-h", host, "-p", port]).args(args).output().expect("run redis-cli")
}

/// What `redis-cli` prints for `args` against `addr`, without the last newline; the call must
/// succeed.
pub fn redis_cli(addr: &str, args: &[&str]) -> String {
    let out = redis_cli_run(addr, args);
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim_end_matches('\n').to_string()
}

/// `/usr/bin/python3`, checked to import redis-py (Debian's `python3-redis`; the system Python,
/// not a venv, so that the package is the one apt installs).
pub fn python3_redis() -> Command {
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let checked =
        CHECKED.get_or_init(|| match Command::new("/usr/bin/python3").args(["-c", "import redis"]).output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => {
                Err(format!("redis-py ({})", String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or("")))
            }
            Err(e) => Err(format!("/usr/bin/python3 ({e})")),
        });
    if let Err(what) = checked {
        missing(what, "python3-redis");
    }
    Command::new("/usr/bin/python3")
}

/// Run a redis-py `script` with `args` (its `sys.argv[1..]`) and return what it did.
pub fn redis_py(script: &str, args: &[&str]) -> std::process::Output {
    python3_redis()
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("/usr/bin/python3 with python3-redis is needed: apt-get install python3-redis")
}

/// The path of libfaketime; panics naming `faketime` if it is not installed.
pub fn libfaketime() -> &'static str {
    if !std::path::Path::new(LIBFAKETIME).exists() {
        missing(&format!("libfaketime ({LIBFAKETIME})"), "faketime");
    }
    LIBFAKETIME
}
