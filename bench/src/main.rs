//! `bench`: Potok's benchmarks. Each prints the reference it compares against, measured in
//! the same run, and the ratio.
//!
//!   cargo run --release -p potok-bench -- llhls-latency [--seconds 60] [--runs 3]
//!   cargo run --release -p potok-bench -- chat [--clients 10000] [--rate 50] [--runs 3]
//!   cargo run --release -p potok-bench -- ledger [--donations 3000] [--concurrency 16] [--runs 3]
//!   cargo run --release -p potok-bench -- web-latency [--seconds 30] [--runs 1] [--ladder]
//!   cargo run --release -p potok-bench -- alerts [--donations 20] [--runs 3]

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)] // printing results is what this binary is for

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use potok_bench::llhls::{Options, Report, run};
use potok_bench::stats::{median, percentile};

#[derive(Parser)]
#[command(name = "bench", about = "Potok benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Frame → downloadable part at the origin (vs nginx-rtmp HLS segments), and hls.js latency.
    LlhlsLatency {
        /// Seconds measured per run, after a 5 s warm-up.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Runs; the summary gives the median of the runs' percentiles.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Skip the nginx-rtmp reference.
        #[arg(long)]
        no_reference: bool,
        /// Skip hls.js in headless Chromium.
        #[arg(long)]
        no_player: bool,
    },
    /// N simulated LL-HLS viewers on one edge: delivery delay, upstream requests, memory.
    Viewers {
        /// Viewers.
        #[arg(long, default_value_t = 10_000)]
        viewers: usize,
        /// Seconds measured after they joined.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Cache hits over HTTP/3 against HTTP/1.1, same client design.
    EdgeH3 {
        /// Seconds per run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// The ABR ladder (720p/480p/360p, libx264) vs the ffmpeg CLI doing the same in one
    /// process, over a 1080p30 testsrc2 source; runs alternate.
    Ladder {
        /// Seconds of source.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Runs of each side; the summary gives medians.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Chat fan-out: N WebSocket receivers in one room, M messages/s in, vs a Node.js `ws`
    /// broadcast server; the servers run in their own processes, this one is the load.
    Chat {
        /// Receiving sockets in the room.
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// Messages per second sent into the room.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Seconds measured per run (after a 1 s warm-up).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Runs of each server, alternating; the summary gives medians.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Skip the Node.js reference.
        #[arg(long)]
        no_reference: bool,
    },
    /// Donations/s through the provider-notification path on PostgreSQL (exactly once,
    /// reconciled) vs pgbench's simple-update against the same server.
    Ledger {
        /// Donations per run (each notified twice).
        #[arg(long, default_value_t = 3000)]
        donations: usize,
        /// Notifications in flight (also pgbench's clients).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Runs; the summary gives medians.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Seconds of pgbench per run.
        #[arg(long, default_value_t = 10)]
        pgbench_seconds: u64,
        /// The PostgreSQL server (an empty database is made in it per run).
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        postgres: String,
    },
    /// The control plane of `bench ledger`, started by it in a child process.
    #[command(hide = true)]
    LedgerServer {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        yookassa: String,
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// The Potok server of `bench chat`, started by it in a child process.
    #[command(hide = true)]
    ChatServer {
        /// Where the SQLite database goes.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Glass-to-glass latency of the watch page's player vs plain hls.js defaults, same
    /// stream, same run (timestamps burned into the frames, read back in Chromium).
    WebLatency {
        /// Seconds each player is sampled (after it starts and settles for 3 s).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Runs; the summary gives the median of the runs' percentiles.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// With the ABR ladder (720p source + 480p + 360p).
        #[arg(long)]
        ladder: bool,
    },
    /// A donation's payment confirmation to its alert on screen in the alerts overlay
    /// (headless Chromium), vs the same event on a plain WebSocket client, same run.
    Alerts {
        /// Donations per run (one at a time).
        #[arg(long, default_value_t = 20)]
        donations: usize,
        /// Runs; the summary gives the median of the runs' percentiles.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Cache-hit requests/s and throughput of the edge vs nginx sendfile (wrk, HTTP/1.1).
    EdgeStatic {
        /// Seconds per wrk run.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// Alternating rounds per configuration; the summary gives medians.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
}

fn web_latency(
    rt: &tokio::runtime::Runtime,
    seconds: u64,
    runs: usize,
    ladder: bool,
) -> anyhow::Result<()> {
    let opts = potok_bench::weblatency::Options {
        seconds,
        ladder,
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    println!(
        "web-latency: 1280x720 30 fps x264 veryfast zerolatency -g 60 + AAC, ladder {}, PART-TARGET 200 ms; origin + edge + control plane in one process; headless Chromium; {seconds} s per player per run, {runs} run(s)",
        if ladder { "on" } else { "off" }
    );
    println!(
        "  latency = frame shown (requestVideoFrameCallback expectedDisplayTime) - frame written to the RTMP socket"
    );
    println!(
        "  reference: plain hls.js 1.7.4 defaults (new Hls()) on the same edge URL, after the watch page, same stream"
    );
    let (mut w50, mut w90, mut p50, mut p90) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 1..=runs {
        let r = rt.block_on(potok_bench::weblatency::run(&opts))?;
        let (a, b, c, d) = (
            percentile(&r.watch_ms, 50.0),
            percentile(&r.watch_ms, 90.0),
            percentile(&r.plain_ms, 50.0),
            percentile(&r.plain_ms, 90.0),
        );
        println!(
            "run {i}: watch page p50 {} p90 {} ({} frames) | plain hls.js p50 {} p90 {} ({} frames)",
            fmt(a, "ms"),
            fmt(b, "ms"),
            r.watch_ms.len(),
            fmt(c, "ms"),
            fmt(d, "ms"),
            r.plain_ms.len()
        );
        w50.extend(a);
        w90.extend(b);
        p50.extend(c);
        p90.extend(d);
    }
    let (w50, w90, p50, p90) = (median(&w50), median(&w90), median(&p50), median(&p90));
    println!("summary (median of runs):");
    println!(
        "  watch page p50 {} p90 {} (target p50 <= 1000 ms) | plain hls.js p50 {} p90 {}",
        fmt(w50, "ms"),
        fmt(w90, "ms"),
        fmt(p50, "ms"),
        fmt(p90, "ms")
    );
    if let (Some(w), Some(p)) = (w50, p50) {
        println!("  ratio plain/watch page (p50): {:.2}x", p / w);
    }
    Ok(())
}

fn alerts_bench(rt: &tokio::runtime::Runtime, donations: usize, runs: usize) -> anyhow::Result<()> {
    let opts = potok_bench::alerts::Options {
        donations,
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    println!(
        "alerts: control plane in this process (SQLite, sandbox payments), {donations} donations one at a time per run, {runs} run(s); headless Chromium on /overlay/<token>/alerts"
    );
    println!(
        "  latency = from the sandbox confirmation request (the webhook) to the alert box on screen (the animation frame after it was added)"
    );
    println!(
        "  reference: the same donation event on a plain WebSocket client of overlay:<channel>"
    );
    let mut all: [Vec<f64>; 5] = Default::default();
    for i in 1..=runs {
        let r = rt.block_on(potok_bench::alerts::run(&opts))?;
        let q = [
            percentile(&r.shown_ms, 50.0),
            percentile(&r.shown_ms, 99.0),
            percentile(&r.socket_ms, 50.0),
            percentile(&r.socket_ms, 99.0),
            percentile(&r.confirm_ms, 50.0),
        ];
        println!(
            "run {i}: overlay p50 {} p99 {} | socket p50 {} p99 {} | confirmation answered p50 {} ({} alerts)",
            fmt(q[0], "ms"),
            fmt(q[1], "ms"),
            fmt(q[2], "ms"),
            fmt(q[3], "ms"),
            fmt(q[4], "ms"),
            r.shown_ms.len()
        );
        for (acc, v) in all.iter_mut().zip(q) {
            acc.extend(v);
        }
    }
    let m: Vec<Option<f64>> = all.iter().map(|v| median(v)).collect();
    println!("summary (median of runs):");
    println!(
        "  overlay p50 {} p99 {} (target p99 <= 1000 ms) | socket p50 {} p99 {} | confirmation p50 {}",
        fmt(m[0], "ms"),
        fmt(m[1], "ms"),
        fmt(m[2], "ms"),
        fmt(m[3], "ms"),
        fmt(m[4], "ms")
    );
    if let (Some(o), Some(s)) = (m[0], m[2]) {
        println!(
            "  the page's share (overlay - socket, p50): {:.0} ms",
            o - s
        );
    }
    Ok(())
}

fn fmt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0} {unit}"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (seconds, runs, no_reference, no_player) = match cli.command {
        Bench::LlhlsLatency {
            seconds,
            runs,
            no_reference,
            no_player,
        } => (seconds, runs, no_reference, no_player),
        Bench::EdgeStatic { seconds, rounds } => return edge_static(&rt, seconds, rounds),
        Bench::Ladder { seconds, runs } => return ladder_bench(seconds, runs),
        Bench::Viewers { viewers, seconds } => return viewers_bench(&rt, viewers, seconds),
        Bench::EdgeH3 {
            seconds,
            connections,
        } => return edge_h3(&rt, seconds, connections),
        Bench::Chat {
            clients,
            rate,
            seconds,
            runs,
            no_reference,
        } => {
            let opts = potok_bench::chat::Options {
                clients,
                rate,
                seconds,
            };
            return chat_bench(&rt, &opts, runs, !no_reference);
        }
        Bench::WebLatency {
            seconds,
            runs,
            ladder,
        } => return web_latency(&rt, seconds, runs, ladder),
        Bench::Alerts { donations, runs } => return alerts_bench(&rt, donations, runs),
        Bench::ChatServer { data_dir } => return rt.block_on(potok_bench::chat::serve(data_dir)),
        Bench::Ledger {
            donations,
            concurrency,
            runs,
            pgbench_seconds,
            postgres,
        } => {
            let opts = potok_bench::ledger::Options {
                donations,
                concurrency,
                admin_url: postgres,
                pgbench_seconds,
            };
            return ledger_bench(&rt, &opts, runs);
        }
        Bench::LedgerServer {
            database_url,
            yookassa,
            data_dir,
        } => {
            return rt.block_on(potok_bench::ledger::serve(database_url, yookassa, data_dir));
        }
    };
    let opts = Options {
        seconds,
        reference: !no_reference,
        player: !no_player,
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    println!(
        "llhls-latency: 1280x720 30 fps x264 veryfast zerolatency -g 60 + AAC, {seconds} s per run after 5 s warm-up, {runs} run(s)"
    );
    println!(
        "  Potok: PART-TARGET 200 ms, segment target 2 s; parts fetched through preload hints"
    );
    if opts.reference {
        println!(
            "  reference: nginx-rtmp HLS (hls_fragment 1s; cut at keyframes), same frames, playlist polled every 10 ms"
        );
    }
    let mut per_run: Vec<Report> = Vec::new();
    for i in 1..=runs {
        let r = rt.block_on(run(&opts))?;
        let pt = r.part_target_ms;
        println!(
            "run {i}: Potok part after last frame p50 {} p99 {} ({} parts; p99 = {:.2} x PART-TARGET) | reference segment p50 {} p99 {} ({} segments) | hls.js latency p50 Potok {} reference {}",
            fmt(percentile(&r.part_ms, 50.0), "ms"),
            fmt(percentile(&r.part_ms, 99.0), "ms"),
            r.part_ms.len(),
            percentile(&r.part_ms, 99.0).unwrap_or(f64::NAN) / pt,
            fmt(percentile(&r.reference_segment_ms, 50.0), "ms"),
            fmt(percentile(&r.reference_segment_ms, 99.0), "ms"),
            r.reference_segment_ms.len(),
            fmt(median(&r.player_potok).map(|s| s * 1000.0), "ms"),
            fmt(median(&r.player_reference).map(|s| s * 1000.0), "ms"),
        );
        per_run.push(r);
    }
    let med = |f: &dyn Fn(&Report) -> Option<f64>| {
        median(&per_run.iter().filter_map(f).collect::<Vec<_>>())
    };
    let pt = per_run.first().map_or(200.0, |r| r.part_target_ms);
    let part50 = med(&|r| percentile(&r.part_ms, 50.0));
    let part99 = med(&|r| percentile(&r.part_ms, 99.0));
    let ref50 = med(&|r| percentile(&r.reference_segment_ms, 50.0));
    let ref99 = med(&|r| percentile(&r.reference_segment_ms, 99.0));
    let play = med(&|r| median(&r.player_potok));
    let play_ref = med(&|r| median(&r.player_reference));
    println!("summary (median of runs):");
    println!(
        "  frame -> downloadable: Potok part p50 {} p99 {} = {:.2} x PART-TARGET (target <= 1.00) | reference segment p50 {} p99 {}",
        fmt(part50, "ms"),
        fmt(part99, "ms"),
        part99.unwrap_or(f64::NAN) / pt,
        fmt(ref50, "ms"),
        fmt(ref99, "ms"),
    );
    if let (Some(a), Some(b)) = (part50, ref50) {
        println!("  ratio reference/Potok (p50): {:.1}x", b / a);
    }
    println!(
        "  hls.js latency p50: Potok {} (target <= 1000 ms) | reference {}",
        fmt(play.map(|s| s * 1000.0), "ms"),
        fmt(play_ref.map(|s| s * 1000.0), "ms")
    );
    if let (Some(a), Some(b)) = (play, play_ref) {
        println!("  ratio reference/Potok (player latency): {:.1}x", b / a);
    }
    Ok(())
}

fn edge_static(rt: &tokio::runtime::Runtime, seconds: u32, rounds: usize) -> anyhow::Result<()> {
    println!(
        "edge-static: wrk -t2, HTTP/1.1 keep-alive, {seconds} s per run, {rounds} alternating round(s); cache hits at Potok's edge vs nginx sendfile from disk"
    );
    let pairs = rt.block_on(potok_bench::edge::edge_static(seconds, rounds))?;
    for p in pairs {
        let med = |v: &[potok_bench::edge::WrkResult],
                   f: fn(&potok_bench::edge::WrkResult) -> f64| {
            median(&v.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        let (n_rps, p_rps) = (med(&p.nginx, |r| r.rps), med(&p.potok, |r| r.rps));
        let (n_bps, p_bps) = (
            med(&p.nginx, |r| r.bytes_per_sec),
            med(&p.potok, |r| r.bytes_per_sec),
        );
        println!(
            "  {:>6}, {:>3} connections: nginx {:>8.0} req/s {:>5.1} Gbit/s | Potok {:>8.0} req/s {:>5.1} Gbit/s | ratio {:.2}x (target >= 1.0)",
            p.size,
            p.connections,
            n_rps,
            n_bps * 8.0 / 1e9,
            p_rps,
            p_bps * 8.0 / 1e9,
            p_rps / n_rps
        );
    }
    Ok(())
}

fn viewers_bench(rt: &tokio::runtime::Runtime, viewers: usize, seconds: u64) -> anyhow::Result<()> {
    println!(
        "viewers: {viewers} simulated LL-HLS viewers (blocking playlist + part loop) on one edge, {seconds} s measured; origin, edge and viewers in this process"
    );
    let r = rt.block_on(potok_bench::viewers::run(viewers, seconds))?;
    println!(
        "  part exists at the origin -> viewer has it: p50 {} p99 {} over {} deliveries (target p99 <= 100 ms)",
        fmt(percentile(&r.delays_ms, 50.0), "ms"),
        fmt(percentile(&r.delays_ms, 99.0), "ms"),
        r.delays_ms.len()
    );
    println!(
        "  origin: {} parts produced, {} requests from the edge = {:.2} per part (one playlist + one part per part is 2.00; naive baseline without coalescing: {} viewers x 2 = {} per part)",
        r.parts,
        r.upstream_requests,
        r.upstream_requests as f64 / r.parts.max(1) as f64,
        r.viewers,
        r.viewers * 2
    );
    println!(
        "  edge held at most {} requests at once; {} viewer request errors",
        r.max_held, r.errors
    );
    println!(
        "  memory: {:.1} KiB RSS per viewer (edge and the simulated viewers together)",
        r.rss_per_viewer / 1024.0
    );
    Ok(())
}

fn edge_h3(rt: &tokio::runtime::Runtime, seconds: u64, connections: usize) -> anyhow::Result<()> {
    use potok_bench::{edge, h3load};
    println!(
        "edge-h3: cache hits, {connections} connections each looping GETs for {seconds} s; HTTP/1.1 (hyper client) is the reference"
    );
    rt.block_on(async {
        let bench = edge::start().await?;
        for (i, (_, label)) in edge::SIZES.iter().enumerate() {
            let path = bench.objects[i].0.clone();
            // Fill the cache.
            h3load::h1(bench.edge, &path, 1, 1).await?;
            let h1 = h3load::h1(bench.edge, &path, connections, seconds).await?;
            let h3 = h3load::h3(bench.https_port, &bench.cert, &path, connections, seconds).await?;
            println!(
                "  {label:>6}: HTTP/1.1 {:>7.0} req/s {:>5.1} Gbit/s | HTTP/3 {:>7.0} req/s {:>5.1} Gbit/s | ratio h3/h1 {:.2}x",
                h1.rps,
                h1.bytes_per_sec * 8.0 / 1e9,
                h3.rps,
                h3.bytes_per_sec * 8.0 / 1e9,
                h3.rps / h1.rps.max(1e-9)
            );
        }
        Ok(())
    })
}

fn ledger_bench(
    rt: &tokio::runtime::Runtime,
    opts: &potok_bench::ledger::Options,
    runs: usize,
) -> anyhow::Result<()> {
    println!(
        "ledger: {} donations per run, each notified twice (payment.succeeded), {} in flight; the control plane runs in its own process on PostgreSQL, this process is the load and the YooKassa-shaped API (same 2 cores)",
        opts.donations, opts.concurrency
    );
    println!(
        "  Potok: per notification, GET the payment from the API, then one transaction: the donation completed, its double-entry posting, goal contributions, the DonationProcessed event; then the dispatch (overlay, chat, notification)"
    );
    println!(
        "  reference: pgbench --builtin=simple-update -c {} -j 2 for {} s, scale 10, same server",
        opts.concurrency, opts.pgbench_seconds
    );
    let (mut rates, mut p99s, mut p50s, mut tps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 1..=runs {
        let r = rt.block_on(potok_bench::ledger::run(opts))?;
        let (p50, p99) = (
            percentile(&r.latencies_ms, 50.0),
            percentile(&r.latencies_ms, 99.0),
        );
        println!(
            "run {i}: {:.0} donations/s credited exactly once (ledger reconciled), notification → committed answer p50 {} p99 {} | pgbench simple-update {} tps | ratio {}",
            r.donations_per_s,
            fmt(p50, "ms"),
            fmt(p99, "ms"),
            r.pgbench_tps.map_or("-".into(), |t| format!("{t:.0}")),
            r.pgbench_tps
                .map_or("-".into(), |t| format!("{:.2}x", r.donations_per_s / t)),
        );
        rates.push(r.donations_per_s);
        p50s.extend(p50);
        p99s.extend(p99);
        tps.extend(r.pgbench_tps);
    }
    let (rate, t) = (median(&rates), median(&tps));
    println!(
        "median of {runs}: {} donations/s, p50 {} p99 {} (target <= 50 ms) | pgbench {} tps | ratio {} (target >= 0.5x)",
        rate.map_or("-".into(), |r| format!("{r:.0}")),
        fmt(median(&p50s), "ms"),
        fmt(median(&p99s), "ms"),
        t.map_or("-".into(), |t| format!("{t:.0}")),
        match (rate, t) {
            (Some(r), Some(t)) => format!("{:.2}x", r / t),
            _ => "-".into(),
        }
    );
    Ok(())
}

fn chat_bench(
    rt: &tokio::runtime::Runtime,
    opts: &potok_bench::chat::Options,
    runs: usize,
    reference: bool,
) -> anyhow::Result<()> {
    use potok_bench::chat::{Report, Target, run};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    println!(
        "chat: {} receiving WebSocket clients in one room, {} messages/s in, {} s measured after 1 s warm-up, {runs} alternating run(s); servers in their own processes, this process is the load generator (same 2 cores)",
        opts.clients, opts.rate, opts.seconds
    );
    println!(
        "  Potok: control plane, SQLite; every message is checked (flood, duplicates, blocked terms, links, mentions) and stored in one write transaction before the fan-out"
    );
    if reference {
        println!(
            "  reference: Node.js {} + npm ws (bench/node/ws-broadcast.mjs), same frames; it only relays: no database, no checks, one thread",
            std::process::Command::new("node")
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        );
    }
    let mut targets = vec![Target::Potok];
    if reference {
        targets.push(Target::Reference);
    }
    let name = |t: Target| match t {
        Target::Potok => "Potok",
        Target::Reference => "reference",
    };
    let mut results: Vec<(Target, Report)> = Vec::new();
    for i in 1..=runs {
        for &t in &targets {
            let r = rt.block_on(run(t, opts, &root))?;
            println!(
                "run {i} {:<9}: {}/{} connected, {:.1} msg/s in ({} acked, {} refused), {:.0} deliveries/s, {:.1} % of the measured messages delivered, latency p50 {} p99 {}, {:.2} KB per idle connection, {} sockets closed, server pid {}",
                name(t),
                r.connected,
                opts.clients,
                r.sent_per_sec,
                r.acked,
                r.refused,
                r.deliveries_per_sec,
                r.delivered_fraction * 100.0,
                fmt_ms(r.p50_ms),
                fmt_ms(r.p99_ms),
                r.kib_per_idle * 1.024,
                r.closed,
                r.server_pid,
            );
            if let Some(why) = &r.first_refusal {
                println!("  first refusal: {why}");
            }
            results.push((t, r));
        }
    }
    let med = |t: Target, f: fn(&Report) -> Option<f64>| {
        median(
            &results
                .iter()
                .filter(|(w, _)| *w == t)
                .filter_map(|(_, r)| f(r))
                .collect::<Vec<_>>(),
        )
    };
    println!("summary (median of runs):");
    let mut rates = Vec::new();
    for &t in &targets {
        let d = med(t, |r| Some(r.deliveries_per_sec));
        rates.push(d);
        println!(
            "  {:<9}: {} connections, {:.1} msg/s in, {:.0} deliveries/s, latency p50 {} p99 {}, {:.2} KB per idle connection",
            name(t),
            med(t, |r| Some(r.connected as f64)).unwrap_or(0.0),
            med(t, |r| Some(r.sent_per_sec)).unwrap_or(0.0),
            d.unwrap_or(0.0),
            fmt_ms(med(t, |r| r.p50_ms)),
            fmt_ms(med(t, |r| r.p99_ms)),
            med(t, |r| Some(r.kib_per_idle * 1.024)).unwrap_or(0.0),
        );
    }
    println!(
        "  targets for Potok: >= 500000 deliveries/s with 10000 connections, p99 <= 100 ms, <= 8 KB per idle connection, >= 2x the reference"
    );
    if let [Some(p), Some(r)] = rates[..] {
        println!("  ratio Potok/reference (deliveries/s): {:.2}x", p / r);
    }
    Ok(())
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_owned(),
        Some(v) if v.is_infinite() => "not delivered 5 s after sending stopped".to_owned(),
        Some(v) => format!("{v:.1} ms"),
    }
}

fn ladder_bench(seconds: u32, runs: usize) -> anyhow::Result<()> {
    use potok_bench::ladder;
    println!(
        "ladder: {seconds} s of 1920x1080 30 fps testsrc2 (x264, keyframe every 2 s) -> {} with libx264 preset {} tune {}, no B-frames; {runs} alternating run(s) each",
        ladder::RUNGS
            .iter()
            .map(|(n, _, k, _)| format!("{n} {k}k"))
            .collect::<Vec<_>>()
            .join(", "),
        ladder::PRESET,
        ladder::TUNE,
    );
    println!(
        "  reference: the ffmpeg CLI, one process, -filter_complex split=3 + scale (bicubic), same x264 options, null output"
    );
    let report = ladder::run(seconds, runs, |who, i, r| {
        println!(
            "run {i} {who:<6}: {:.1} source frames/s ({:.0} kbit/s encoded over all rungs)",
            r.fps, r.kbps
        );
    })?;
    let potok = median(&report.potok.iter().map(|r| r.fps).collect::<Vec<_>>());
    let ffmpeg = median(&report.ffmpeg.iter().map(|r| r.fps).collect::<Vec<_>>());
    if let (Some(p), Some(f)) = (potok, ffmpeg) {
        println!(
            "median: Potok {p:.1} fps, ffmpeg CLI {f:.1} fps -> ratio {:.2}x (target >= 1.0x); real time needs 30 fps",
            p / f
        );
    }
    Ok(())
}
