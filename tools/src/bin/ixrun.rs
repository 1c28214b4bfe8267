//! ixrun: runs an unmodified program on libix, like `onload` does: its libevent calls and its TCP sockets on the
//! dataplane's address go to libix (`LD_PRELOAD=libix.so`), with the dataplane configured from the options.
//!
//! ```text
//! ixrun --iface ixd0 --ip 198.18.0.1/24 -- memcached -u root -t 2 -p 11211
//! ```
//! Sockets bound to the dataplane's address (or to INADDR_ANY: then on the dataplane and the kernel both) and
//! connections to its subnet run on the dataplane; everything else (loopback, AF_UNIX, pipes, files) stays in the
//! kernel. Options map to the `IX_*` environment libix reads (see README); `ixctl stats` shows the counters.
use clap::{Parser, ValueEnum};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    /// AF_XDP, falling back to TAP.
    Auto,
    /// AF_XDP on the interface (veth or a real NIC).
    Afxdp,
    /// A multi-queue TAP interface created under that name.
    Tap,
}

#[derive(Parser, Debug)]
#[command(
    name = "ixrun",
    version,
    about = "Run a program on libix: libevent and dataplane TCP sockets through LD_PRELOAD",
    after_help = "Example (memcached served through the dataplane on ixd0, and through the kernel on \
                  127.0.0.1):\n  ixrun --iface ixd0 --ip 198.18.0.1/24 -- memcached -u root -t 2 -p 11211 -U 0\n\n\
                  libix checks at start-up that it provides every libevent function the program uses; if not, it \
                  says which and runs the program without itself."
)]
struct Cli {
    /// Interface the dataplane takes over (IX_IFACE).
    #[arg(long, env = "IX_IFACE")]
    iface: String,
    /// The dataplane's address and prefix, e.g. 198.18.0.1/24 (IX_IP).
    #[arg(long, env = "IX_IP")]
    ip: String,
    /// NIC queues (IX_QUEUES).
    #[arg(long, env = "IX_QUEUES", default_value_t = 1)]
    queues: u32,
    /// NIC backend (IX_BACKEND).
    #[arg(long, value_enum, default_value = "afxdp")]
    backend: Backend,
    /// Batch bound B: most packets run through the stack per cycle (IX_BATCH).
    #[arg(long)]
    batch: Option<usize>,
    /// The longest an idle event loop keeps polling before it sleeps, in microseconds (IX_SPIN_US; 0: sleep at
    /// once); each loop adapts its own spin below it.
    #[arg(long)]
    spin_us: Option<u64>,
    /// Log filter (IX_LOG), e.g. info or debug.
    #[arg(long)]
    log: Option<String>,
    /// Where the statistics page for ixctl goes (IX_STATS_DIR).
    #[arg(long)]
    stats_dir: Option<PathBuf>,
    /// libix.so to preload (default: next to ixrun, ../lib/libix.so, or LIBIX_SO).
    #[arg(long, env = "LIBIX_SO")]
    lib: Option<PathBuf>,
    /// Print the environment and command instead of running them.
    #[arg(long)]
    dry_run: bool,
    /// The program and its arguments.
    #[arg(required = true, last = true)]
    command: Vec<OsString>,
}

/// Where libix.so is, relative to this executable: built tree (`target/release/`) or installed (`bin/` + `lib/`).
fn find_lib(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() { Ok(p) } else { Err(format!("--lib {}: no such file", p.display())) };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate ixrun itself: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [dir.join("libix.so"), dir.join("../lib/libix.so"), dir.join("../lib/libix.so.0")];
    candidates.iter().find(|p| p.is_file()).map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).ok_or_else(|| {
        format!("libix.so not found next to {} (looked in {}); pass --lib", exe.display(), dir.display())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let lib = match find_lib(cli.lib.clone()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ixrun: {e}");
            return ExitCode::from(2);
        }
    };
    let backend = match cli.backend {
        Backend::Auto => "auto",
        Backend::Afxdp => "afxdp",
        Backend::Tap => "tap",
    };
    let mut env: Vec<(&str, OsString)> = vec![
        ("IX_IFACE", cli.iface.clone().into()),
        ("IX_IP", cli.ip.clone().into()),
        ("IX_QUEUES", cli.queues.to_string().into()),
        ("IX_BACKEND", backend.into()),
    ];
    if let Some(b) = cli.batch {
        env.push(("IX_BATCH", b.to_string().into()));
    }
    if let Some(s) = cli.spin_us {
        env.push(("IX_SPIN_US", s.to_string().into()));
    }
    if let Some(l) = &cli.log {
        env.push(("IX_LOG", l.into()));
    }
    if let Some(d) = &cli.stats_dir {
        env.push(("IX_STATS_DIR", d.clone().into()));
    }
    // Ours goes first; whatever the user preloads already stays after it.
    let mut preload = OsString::from(&lib);
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    env.push(("LD_PRELOAD", preload));

    let (program, args) = cli.command.split_first().expect("clap requires a command");
    if cli.dry_run {
        for (k, v) in &env {
            println!("{k}={}", v.to_string_lossy());
        }
        let line: Vec<_> = cli.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        println!("{}", line.join(" "));
        return ExitCode::SUCCESS;
    }
    let err = Command::new(program).args(args).envs(env.iter().map(|(k, v)| (k, v))).exec();
    eprintln!("ixrun: cannot run {}: {err}", program.to_string_lossy());
    ExitCode::from(127)
}
