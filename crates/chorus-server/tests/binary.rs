//! The `chorus` binary as a newcomer meets it: its help, a setting given
//! without `serve`, no start without a token key or `--dev`, boolean
//! environment variables, logs written to a pipe, SIGHUP without TLS,
//! a fresh server's /metrics, /readyz when its Redis is gone, and the
//! number of worker threads it runs (--workers). Each test
//! runs the real binary (built by cargo for these tests) as a child process.

mod process;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_redis::testing::RedisServer;
use process::{http_get as get, Listening};

/// `chorus <args>` with no CHORUS_* variable from the environment of the tests.
fn chorus(args: &[&str]) -> Command {
    let mut cmd = process::clean_command(env!("CARGO_BIN_EXE_chorus"));
    cmd.args(args);
    cmd
}

/// Whether the server runs in open development mode, as its /status page says.
fn open_mode(server: &Listening) -> bool {
    let (status, page) = get(server.addr(), "/status");
    assert_eq!(status, 200);
    page.contains("open development mode")
}

/// Starts `chorus serve --listen 127.0.0.1:0 <args>` with `env`, waiting for its "listening" line.
/// Without `--redis`, in memory: a test never writes ./chorus-data.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Listening {
    let mut cmd = chorus(&["serve", "--listen", "127.0.0.1:0"]);
    if !args.contains(&"--redis") {
        cmd.arg("--memory");
    }
    cmd.args(args).envs(env.iter().copied());
    Listening::spawn(cmd)
}

#[test]
fn help_lists_the_commands_and_says_where_the_settings_are() {
    let out = chorus(&["--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("serve"), "{help}");
    assert!(help.contains("chorus serve --help"), "points to the settings:\n{help}");
    assert!(help.contains("chorus serve --dev"), "shows how to try it:\n{help}");
    // `chorus` alone shows the same help rather than a bare error.
    let bare = chorus(&[]).output().unwrap();
    assert!(String::from_utf8_lossy(&bare.stderr).contains("chorus serve --help"));
}

#[test]
fn a_setting_without_serve_is_answered_with_the_command_that_was_meant() {
    let out = chorus(&["--dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("run `chorus serve --dev`"), "{err}");
    let out = chorus(&["--dev", "--listen", "127.0.0.1:0"]).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("run `chorus serve --dev --listen 127.0.0.1:0`"), "{err}");
    // A typo is not a setting of serve either: no such suggestion.
    let out = chorus(&["--dve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8(out.stderr).unwrap().contains("tip: settings belong"));
}

#[test]
fn boolean_variables_take_the_usual_spellings() {
    // With a token key configured, only CHORUS_DEV can open the server.
    let key = ("CHORUS_JWT_SECRET", "s3cret");
    for yes in ["1", "true", "TRUE", "yes", "on"] {
        assert!(open_mode(&serve(&[], &[key, ("CHORUS_DEV", yes)])), "CHORUS_DEV={yes}");
    }
    for no in ["0", "false", "no", "off"] {
        assert!(!open_mode(&serve(&[], &[key, ("CHORUS_DEV", no)])), "CHORUS_DEV={no}");
    }
    let out = chorus(&["serve"]).env("CHORUS_DEV", "maybe").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("use true/false, 1/0, yes/no or on/off"), "{err}");
}

#[test]
fn every_boolean_variable_takes_the_usual_spellings() {
    // The boolean settings are the flags `chorus serve --help` lists with an
    // environment variable and no value: a new one is checked here as it is added.
    let help = String::from_utf8(chorus(&["serve", "--help"]).output().unwrap().stdout).unwrap();
    let lines: Vec<&str> = help.lines().collect();
    let mut variables = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let flag = line.trim_start();
        if !flag.starts_with("--") || flag.contains('<') {
            continue;
        }
        if let Some(env) = lines.get(i + 1).and_then(|l| l.split("[env: ").nth(1)) {
            variables.push(env.split(['=', ']']).next().unwrap().to_owned());
        }
    }
    for known in ["CHORUS_DEV", "CHORUS_MEMORY", "CHORUS_ALLOW_TOKENS_WITHOUT_EXP"] {
        assert!(variables.iter().any(|v| v == known), "{known} is among the boolean settings found: {variables:?}\n{help}");
    }
    for variable in &variables {
        // Parsed, the settings stop at a check made before anything starts
        // (a bad --allowed-origins), whatever the boolean says.
        for value in ["1", "yes", "ON", "true", "0", "no", "off", "FALSE"] {
            let out = chorus(&["serve", "--listen", "127.0.0.1:0", "--allowed-origins", "not an origin"])
                .env("CHORUS_JWT_SECRET", "s3cret")
                .env(variable, value)
                .output()
                .unwrap();
            let err = String::from_utf8(out.stderr).unwrap();
            assert!(err.contains("cannot start: --allowed-origins"), "{variable}={value} was not taken:\n{err}");
        }
        let out = chorus(&["serve"]).env(variable, "maybe").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{variable}=maybe");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("use true/false, 1/0, yes/no or on/off"), "{variable}=maybe:\n{err}");
    }
}

#[test]
fn without_a_key_and_without_dev_the_server_refuses_to_start_and_says_what_to_set() {
    let out = chorus(&["serve", "--memory", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--jwt-secret (CHORUS_JWT_SECRET)") && err.contains("--jwt-public-key"), "{err}");
    assert!(err.contains("--dev"), "{err}");
    assert!(!err.contains("drop --dev"), "--dev was not given: {err}");
    // With a key it starts, closed; with --dev alone it starts, open, and says so.
    assert!(!open_mode(&serve(&[], &[("CHORUS_JWT_SECRET", "s3cret")])));
    assert!(open_mode(&serve(&["--dev"], &[])));
    // The start-up banner names the flag that was given.
    let mut child = chorus(&["serve", "--dev", "--memory", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let banner = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok).find(|l| l.contains("WARNING"));
    let _ = child.kill();
    let _ = child.wait();
    let banner = banner.expect("a warning on stdout");
    assert!(banner.contains("OPEN DEVELOPMENT MODE (--dev)") && banner.contains("drop --dev"), "{banner}");
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let server = serve(&["--dev"], &[("CHORUS_LOG", "info")]);
    let (status, _) = get(server.addr(), "/healthz");
    assert_eq!(status, 200);
    let logs = server.stop();
    assert!(logs.contains("listening"), "the logs were written:\n{logs}");
    assert!(!logs.contains('\u{1b}'), "no escape codes in a pipe:\n{logs:?}");
}

#[test]
fn sighup_without_tls_is_logged_and_the_server_goes_on() {
    // SIGHUP reloads the TLS files; a server without them must not take the
    // signal's default action (the end of the process) when an operator or
    // a closed terminal sends it.
    let mut server = serve(&["--dev"], &[("CHORUS_LOG", "info")]);
    server.signal("HUP");
    // The default action would have ended the process at once; the handler
    // logs within moments.
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.is_running(), "SIGHUP ended the server");
    assert_eq!(get(server.addr(), "/healthz").0, 200);
    let logs = server.stop();
    assert!(logs.contains("SIGHUP") && logs.contains("--tls-cert"), "the signal is logged with what it would do:\n{logs}");
}

#[test]
fn a_fresh_server_describes_every_metric_it_records() {
    let server = serve(&["--dev"], &[]);
    let (status, body) = get(server.addr(), "/metrics");
    assert_eq!(status, 200);
    let mut names: Vec<&str> = chorus_server::COUNTERS.iter().chain(chorus_server::GAUGES).map(|(name, _)| *name).collect();
    names.extend([chorus_server::ERRORS.0, chorus_server::FANOUT.0, chorus_server::SUBMIT.0, chorus_server::SQLITE_COMMIT.0, chorus_server::SQLITE_CHECKPOINT.0]);
    for name in &names {
        assert!(body.contains(&format!("# HELP {name} ")), "no HELP for {name}:\n{body}");
        assert!(body.contains(&format!("# TYPE {name} ")), "no TYPE for {name}:\n{body}");
    }
    for (name, _) in chorus_server::COUNTERS.iter().chain(chorus_server::GAUGES) {
        // The scrape's own connection is one TCP connection.
        let start = if *name == "chorus_tcp_connections" { 1 } else { 0 };
        assert!(body.contains(&format!("\n{name} {start}\n")), "{name} is not at {start} from the start:\n{body}");
    }
    for code in chorus_server::ERROR_CODES {
        assert!(body.contains(&format!("chorus_errors_total{{code=\"{code}\"}} 0")), "no series for {code}");
    }
    assert!(body.contains("chorus_fanout_seconds_count 0"), "{body}");
    assert!(body.contains("chorus_submit_seconds_count 0"), "{body}");
    assert!(body.contains("chorus_sqlite_commit_seconds_count 0"), "{body}");
    assert!(body.contains("chorus_sqlite_checkpoint_seconds_count 0"), "{body}");

    // docs/protocol.md lists exactly these metrics, and exactly the error codes.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md")).unwrap();
    let metrics_table = doc.split("| metric | type | meaning |").nth(1).expect("the metrics table").split("\n\n").next().unwrap();
    let mut documented: Vec<&str> =
        metrics_table.lines().filter_map(|l| l.strip_prefix("| `")).map(|l| l.split(['`', '{']).next().unwrap()).collect();
    documented.sort();
    names.sort();
    assert_eq!(documented, names, "docs/protocol.md, section 13, lists the metrics the server records");
    let errors_table = doc.split("| code | meaning and when it is sent | closes |").nth(1).expect("the errors table").split("\n\n").next().unwrap();
    let mut codes: Vec<&str> = errors_table.lines().filter_map(|l| l.strip_prefix("| `")).map(|l| l.split('`').next().unwrap()).collect();
    codes.dedup();
    codes.sort();
    let mut known = chorus_server::ERROR_CODES.to_vec();
    known.sort();
    assert_eq!(codes, known, "every documented error code (section 9) starts at zero");
}

#[test]
fn readyz_names_what_is_wrong_with_the_store_once() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let server = serve(&["--dev", "--redis", &url], &[]);
    assert_eq!(get(server.addr(), "/readyz"), (200, "ready\n".into()));
    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let answer = get(server.addr(), "/readyz");
        if answer.0 != 200 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("store unavailable: "), "{body}");
    assert_eq!(body.matches("unavailable").count(), 1, "said once: {body:?}");
    assert!(body.trim().len() > "store unavailable:".len(), "with the reason: {body:?}");
}

/// The runtime's threads in process `pid` named as workers, as the kernel
/// lists them, once `expected` of them are there or 10 s have passed. The
/// blocking pool's threads have the same name, but a server on the
/// in-memory store starts none: these are its workers. A new thread names
/// itself when it first runs, which on a busy machine can come after the
/// server is already listening, so the count is read until it settles.
fn worker_threads(pid: u32, expected: usize) -> usize {
    let count = || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads are listed");
        tasks.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok()).filter(|name| name.trim() == "chorus-worker").count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = count();
        if n == expected || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn workers_sets_the_threads_that_serve_rooms_and_a_bad_value_is_refused() {
    for (args, env, n) in [(&["--dev", "--workers", "1"][..], &[][..], 1), (&["--dev"], &[("CHORUS_WORKERS", "3")][..], 3)] {
        let server = serve(args, env);
        assert_eq!(worker_threads(server.pid(), n), n, "{args:?} {env:?}");
        assert_eq!(get(server.addr(), "/healthz").0, 200);
        let logs = server.stop();
        assert!(logs.contains(&format!("workers={n}")), "the start-up line names the workers:\n{logs}");
    }
    // Unset: one per core, tokio's own default.
    let mut cmd = chorus(&["serve", "--dev", "--memory", "--listen", "127.0.0.1:0"]);
    cmd.env_remove("TOKIO_WORKER_THREADS");
    let server = Listening::spawn(cmd);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(worker_threads(server.pid(), cores), cores);

    for (args, env) in [(&["--workers", "0"][..], None), (&[], Some("many")), (&[], Some("5000"))] {
        let mut cmd = chorus(&["serve", "--dev", "--memory", "--listen", "127.0.0.1:0"]);
        cmd.args(args);
        if let Some(value) = env {
            cmd.env("CHORUS_WORKERS", value);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("--workers") && err.contains("worker threads") && err.contains("1 to 1024"), "{args:?} {env:?}:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
