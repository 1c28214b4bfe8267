//! `ixbench memcached`: the workload distributions against their analytic CDFs, and short runs against a real
//! memcached on 127.0.0.1 (closed and open loop, text and binary protocol), each of which must end without a
//! single error, miss or wrong value.
//!
//! The functional tests start their own `memcached -U 0 -l 127.0.0.1 -m 256` on a free port and kill it
//! afterwards; without a `memcached` binary they print SKIP and pass.
use ix_tools::memcached::workload::{
    KeySpace, Rng, ValuePattern, Workload, ETC_KEY_GEV, ETC_VALUE_GPARETO, ETC_VALUE_HEAD, USR_KEY_SIZE, USR_VALUE_SIZE,
};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ixbench");
const SAMPLES: usize = 100_000;

/// Binomial tolerance: 4.5 standard deviations of an empirical frequency of `p` over `n` samples, plus a floor.
fn tolerance(p: f64, n: usize) -> f64 {
    4.5 * (p * (1.0 - p) / n as f64).sqrt() + 1e-4
}

fn gev_cdf(x: f64, (loc, scale, shape): (f64, f64, f64)) -> f64 {
    (-(1.0 + shape * (x - loc) / scale).powf(-1.0 / shape)).exp()
}

fn gpareto_cdf(x: f64, (loc, scale, shape): (f64, f64, f64)) -> f64 {
    if x <= loc {
        return 0.0;
    }
    1.0 - (1.0 + shape * (x - loc) / scale).powf(-1.0 / shape)
}

#[test]
fn etc_value_sizes_follow_the_discrete_head_and_the_generalized_pareto_tail() {
    let mut rng = Rng::new(7);
    let sizes: Vec<usize> = (0..SAMPLES).map(|_| Workload::Etc.value_size(rng.next_f64())).collect();
    // The head: P(size = i) for 0..=14.
    for (i, &p) in ETC_VALUE_HEAD.iter().enumerate() {
        let seen = sizes.iter().filter(|&&s| s == i).count() as f64 / SAMPLES as f64;
        assert!((seen - p).abs() < tolerance(p, SAMPLES), "P(size = {i}) = {seen}, expected {p}");
    }
    let head: f64 = ETC_VALUE_HEAD.iter().sum();
    let tail: Vec<usize> = sizes.iter().copied().filter(|&s| s >= 15).collect();
    let tail_share = tail.len() as f64 / SAMPLES as f64;
    assert!((tail_share - (1.0 - head)).abs() < tolerance(1.0 - head, SAMPLES), "P(size >= 15) = {tail_share}");
    // The tail: sizes are truncated, so size <= x means the drawn value < x + 1.
    for x in [15, 20, 50, 100, 200, 300, 500, 1000, 2000, 5000] {
        let expected = gpareto_cdf(x as f64 + 1.0, ETC_VALUE_GPARETO);
        let seen = tail.iter().filter(|&&s| s <= x).count() as f64 / tail.len() as f64;
        assert!(
            (seen - expected).abs() < tolerance(expected, tail.len()),
            "P(tail <= {x}) = {seen}, expected {expected}"
        );
    }
    // Quantiles of the tail against the analytic ones (GPareto inverse CDF, truncated), within 5%.
    let mut sorted = tail.clone();
    sorted.sort_unstable();
    let (loc, scale, shape) = ETC_VALUE_GPARETO;
    for q in [0.25f64, 0.5, 0.75, 0.9, 0.99] {
        let analytic = (loc + scale * ((1.0 - q).powf(-shape) - 1.0) / shape).floor();
        let seen = sorted[(q * sorted.len() as f64) as usize] as f64;
        assert!((seen - analytic).abs() <= 0.05 * analytic + 1.0, "tail q{q}: {seen}, expected {analytic}");
    }
    // The mean of the whole mixture: head mean + tail mean (15 + scale / (1 - shape)); heavy tail, 10%.
    let head_mean: f64 = ETC_VALUE_HEAD.iter().enumerate().map(|(i, p)| i as f64 * p).sum();
    let expected_mean = head_mean + (1.0 - head) * (loc + scale / (1.0 - shape) - 0.5);
    let mean = sizes.iter().sum::<usize>() as f64 / SAMPLES as f64;
    assert!((mean - expected_mean).abs() < 0.1 * expected_mean, "mean {mean}, expected {expected_mean}");
}

#[test]
fn etc_key_sizes_follow_the_gev_and_keys_are_stable() {
    let keys = KeySpace::new(Workload::Etc, SAMPLES);
    assert_eq!(keys.len(), SAMPLES);
    let lens: Vec<usize> = (0..SAMPLES).map(|i| keys.key(i).len()).collect();
    assert!(lens.iter().all(|&l| (1..=250).contains(&l)));
    // Most keys are 20-70 bytes (IX §5.5): 96.6% of them.
    let in_range = lens.iter().filter(|&&l| (20..=70).contains(&l)).count() as f64 / SAMPLES as f64;
    let expected = gev_cdf(71.0, ETC_KEY_GEV) - gev_cdf(20.0, ETC_KEY_GEV);
    assert!((in_range - expected).abs() < tolerance(expected, SAMPLES), "{in_range} of the keys are 20-70 bytes");
    for k in (15..=80).step_by(5) {
        let expected = gev_cdf(k as f64 + 1.0, ETC_KEY_GEV);
        let seen = lens.iter().filter(|&&l| l <= k).count() as f64 / SAMPLES as f64;
        assert!((seen - expected).abs() < tolerance(expected, SAMPLES), "P(key <= {k}) = {seen}, expected {expected}");
    }
    let mut sorted = lens.clone();
    sorted.sort_unstable();
    let (loc, scale, shape) = ETC_KEY_GEV;
    for q in [0.1, 0.5, 0.9, 0.99] {
        let analytic = (loc + scale * ((-f64::ln(q)).powf(-shape) - 1.0) / shape).floor();
        let seen = sorted[(q * SAMPLES as f64) as usize] as f64;
        assert!((seen - analytic).abs() <= 1.0, "key size q{q}: {seen}, expected {analytic}");
    }
    // A key is its index, zero-padded, and the same in every key space.
    let again = KeySpace::new(Workload::Etc, 1000);
    for i in [0, 1, 17, 999] {
        assert_eq!(keys.key(i), again.key(i));
        let text = std::str::from_utf8(keys.key(i)).unwrap();
        assert_eq!(text.parse::<usize>().unwrap(), i, "{text}");
    }
}

#[test]
fn usr_sizes_are_fixed() {
    let keys = KeySpace::new(Workload::Usr, 10_000);
    assert!((0..10_000).all(|i| keys.key(i).len() == USR_KEY_SIZE));
    let mut rng = Rng::new(3);
    assert!((0..10_000).all(|_| Workload::Usr.value_size(rng.next_f64()) == USR_VALUE_SIZE));
    assert_eq!(Workload::Usr.get_fraction(), 0.99);
    assert_eq!(Workload::Etc.get_fraction(), 0.75);
    // Values differ by key, whatever their size.
    let v = ValuePattern::new();
    assert_ne!(v.value(1, 64), v.value(2, 64));
    assert_eq!(v.value(5, 10), &v.value(5, 64)[..10]);
}

// ------------------------------------------------------------------------------------------ against memcached

/// A memcached on 127.0.0.1, killed on drop.
struct Memcached {
    child: Child,
    port: u16,
}

impl Memcached {
    /// None (after printing SKIP) when no memcached binary is installed.
    fn start() -> Option<Memcached> {
        if Command::new("memcached").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            eprintln!("SKIP: memcached is not installed (Debian: apt-get install memcached)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("memcached")
            .args(["-u", "root", "-p", &port.to_string(), "-U", "0", "-l", "127.0.0.1", "-m", "256", "-t", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached starts");
        let m = Memcached { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "memcached did not listen on {port} within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(m)
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ixbench-mc-test-{}-{name}", std::process::id()))
}

/// Runs `ixbench memcached` with `args` against `m`; returns the JSON rows (one string per object).
fn ixbench(m: &Memcached, name: &str, args: &[&str]) -> Vec<String> {
    let json = tmp(&format!("{name}.json"));
    let out = Command::new(BIN)
        .args(["memcached", "--server", &format!("127.0.0.1:{}", m.port), "--json", json.to_str().unwrap()])
        .args(args)
        .output()
        .expect("ixbench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ixbench memcached {args:?} failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
    let text = std::fs::read_to_string(&json).expect("the JSON file");
    let _ = std::fs::remove_file(&json);
    text.lines().filter(|l| l.starts_with('{')).map(str::to_string).collect()
}

/// A number of a JSON row, by key (the first match: top-level keys come before the nested object).
fn num(row: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = row.find(&pat).unwrap_or_else(|| panic!("no {key} in {row}")) + pat.len();
    let end = row[at..].find([',', '}']).unwrap() + at;
    row[at..end].parse().unwrap_or_else(|_| panic!("{key} is not a number in {row}"))
}

/// Zero errors and misses, latencies in order.
fn assert_clean(row: &str) {
    assert_eq!(num(row, "errors"), 0.0, "{row}");
    assert_eq!(num(row, "misses"), 0.0, "{row}");
    let (p50, p99, max) = (num(row, "p50"), num(row, "p99"), num(row, "max"));
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{row}");
}

const QUICK: &[&str] = &["--keys", "20000", "--duration", "1", "--warmup", "0.3"];

#[test]
fn closed_loop_text_and_binary_against_memcached() {
    let Some(m) = Memcached::start() else { return };
    for protocol in ["text", "binary"] {
        for workload in ["etc", "usr"] {
            let args = [QUICK, &["--protocol", protocol, "--workload", workload, "--conns", "4", "--depth", "2"]];
            let rows = ixbench(&m, &format!("closed-{protocol}-{workload}"), &args.concat());
            assert_eq!(rows.len(), 1);
            assert_clean(&rows[0]);
            // Loopback memcached serves tens of thousands of requests/s even on a loaded machine.
            let requests = num(&rows[0], "requests");
            assert!(requests > 2000.0, "{protocol}/{workload}: only {requests} requests in 1 s");
            assert!(rows[0].contains("\"unloaded\":null"));
        }
    }
}

#[test]
fn open_loop_text_and_binary_against_memcached() {
    let Some(m) = Memcached::start() else { return };
    let plot = tmp("sweep.png");
    for protocol in ["text", "binary"] {
        let args = [QUICK, &["--protocol", protocol, "--conns", "4", "--threads", "2", "--sweep", "2000,8000"]];
        let mut args = args.concat();
        let plot_arg = plot.to_str().unwrap();
        if protocol == "binary" {
            args.extend(["--plot", plot_arg]);
        } else {
            // The polling client (its measuring connection shares the first thread's loop, counted apart).
            args.push("--busy-poll");
        }
        let rows = ixbench(&m, &format!("open-{protocol}"), &args);
        assert_eq!(rows.len(), 2);
        for (row, offered) in rows.iter().zip([2000.0, 8000.0]) {
            assert_clean(row);
            assert_eq!(num(row, "offered"), offered);
            // Poisson arrivals over 1 s: the count is near the rate (generous: the machine is shared).
            let achieved = num(row, "achieved");
            assert!((achieved - offered).abs() < 0.25 * offered, "{protocol}: {achieved}/s of {offered}/s");
            // The unloaded connection: about 1000 requests/s, one at a time.
            let unloaded = &row[row.find("\"unloaded\":{").expect("an unloaded connection")..];
            let count = num(unloaded, "count");
            assert!((600.0..1400.0).contains(&count), "{count} unloaded requests");
        }
    }
    // Without the measuring connection.
    let args = [QUICK, &["--rate", "3000", "--measure-conn", "false"]].concat();
    let rows = ixbench(&m, "open-no-measure", &args);
    assert_eq!(rows.len(), 1);
    assert_clean(&rows[0]);
    assert!(rows[0].contains("\"unloaded\":null"), "{}", rows[0]);
    let png = std::fs::read(&plot).expect("the plot");
    let _ = std::fs::remove_file(&plot);
    assert!(png.len() > 5000 && png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} bytes", png.len());
}

#[test]
fn refuses_other_addresses() {
    let out = Command::new(BIN).args(["memcached", "--server", "10.1.2.3:11211"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing 10.1.2.3:11211"));
}
