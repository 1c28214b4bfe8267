//! ixctl: live statistics of running libix dataplanes, read from their shared-memory pages without stopping
//! them.
//!
//! `ixctl list` shows the processes that publish; `ixctl stats` prints every counter per queue (`--json` for
//! scripts, `--watch SECS` for rates).
use clap::{Parser, Subcommand};
use dataplane::stats::{Counter, Stats, StatsPage};
use dataplane::wire::Ipv4Address;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ixctl", version, about = "Live statistics and control of libix dataplanes")]
struct Cli {
    /// Where dataplanes publish their statistics pages (IX_STATS_DIR).
    #[arg(long, env = "IX_STATS_DIR", default_value = "/dev/shm")]
    dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the processes running a dataplane.
    List,
    /// Show per-queue counters.
    Stats {
        /// Only this process (default: all).
        #[arg(long)]
        pid: Option<u32>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Print rates every SECS seconds.
        #[arg(long, value_name = "SECS")]
        watch: Option<f64>,
        /// With --watch: stop after N reports.
        #[arg(long, default_value_t = u64::MAX)]
        count: u64,
        /// Show counters that are zero too.
        #[arg(long)]
        all: bool,
    },
}

fn pages(dir: &Path, pid: Option<u32>) -> Vec<StatsPage> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, StatsPage)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let p: u32 = name.strip_prefix("libix.")?.strip_suffix(".stats")?.parse().ok()?;
            if pid.is_some_and(|want| want != p) || !Path::new(&format!("/proc/{p}")).exists() {
                return None;
            }
            StatsPage::open(&e.path()).ok().map(|page| (p, page))
        })
        .collect();
    found.sort_by_key(|(p, _)| *p);
    found.into_iter().map(|(_, page)| page).collect()
}

fn json_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c == '"' || c == '\\' { vec!['\\', c] } else { vec![c] }).collect()
}

fn print_json(pages: &[StatsPage]) {
    let mut out = String::from("[");
    for (i, page) in pages.iter().enumerate() {
        let info = page.info();
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"pid\":{},\"iface\":\"{}\",\"ip\":\"{}/{}\",\"queues\":[",
            info.pid,
            json_escape(&info.iface),
            Ipv4Address::from_u32(info.ip),
            info.prefix_len
        ));
        for q in 0..info.queues {
            let s = page.read(q);
            if q > 0 {
                out.push(',');
            }
            out.push('{');
            let fields: Vec<String> = Counter::ALL.iter().map(|c| format!("\"{}\":{}", c.name(), s.get(*c))).collect();
            out.push_str(&fields.join(","));
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push(']');
    println!("{out}");
}

fn print_table(pages: &[StatsPage], prev: Option<&[Vec<Stats>]>, secs: f64, all: bool) {
    for (pi, page) in pages.iter().enumerate() {
        let info = page.info();
        println!(
            "pid {}  iface {}  ip {}/{}  queues {}",
            info.pid,
            info.iface,
            Ipv4Address::from_u32(info.ip),
            info.prefix_len,
            info.queues
        );
        let now: Vec<Stats> = (0..info.queues).map(|q| page.read(q)).collect();
        print!("  {:<24}", "counter");
        for q in 0..info.queues {
            print!(" {:>14}", format!("q{q}"));
            if prev.is_some() {
                print!(" {:>12}", "/s");
            }
        }
        println!();
        for c in Counter::ALL {
            if !all && now.iter().all(|s| s.get(c) == 0) {
                continue;
            }
            print!("  {:<24}", c.name());
            for (q, s) in now.iter().enumerate() {
                print!(" {:>14}", s.get(c));
                if let Some(p) = prev.and_then(|p| p.get(pi)).and_then(|p| p.get(q)) {
                    let rate = s.get(c).saturating_sub(p.get(c)) as f64 / secs;
                    print!(" {:>12.0}", rate);
                }
            }
            println!();
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::List => {
            for page in pages(&cli.dir, None) {
                let i = page.info();
                println!(
                    "{}\t{}\t{}/{}\t{} queue(s)",
                    i.pid,
                    i.iface,
                    Ipv4Address::from_u32(i.ip),
                    i.prefix_len,
                    i.queues
                );
            }
            ExitCode::SUCCESS
        }
        Cmd::Stats { pid, json, watch, count, all } => {
            let found = pages(&cli.dir, pid);
            if found.is_empty() {
                eprintln!("ixctl: no running libix dataplane publishes statistics in {}", cli.dir.display());
                return ExitCode::from(1);
            }
            if json {
                print_json(&found);
                return ExitCode::SUCCESS;
            }
            let Some(secs) = watch.filter(|s| *s > 0.0) else {
                print_table(&found, None, 1.0, all);
                return ExitCode::SUCCESS;
            };
            let mut prev: Vec<Vec<Stats>> =
                found.iter().map(|p| (0..p.info().queues).map(|q| p.read(q)).collect()).collect();
            for _ in 0..count {
                std::thread::sleep(std::time::Duration::from_secs_f64(secs));
                print_table(&found, Some(&prev), secs, all);
                prev = found.iter().map(|p| (0..p.info().queues).map(|q| p.read(q)).collect()).collect();
            }
            ExitCode::SUCCESS
        }
    }
}
