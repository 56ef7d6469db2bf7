//! `layers-bench`: the repository's benchmark (see bench/README.md).
//!
//! - `layers-bench mock [--listen ADDR]`: a fast mock OpenAI-compatible upstream.
//! - `layers-bench run --layers PATH [--seconds N] [--haproxy PATH] [--haproxy-threads N]`:
//!   starts the mock, haproxy in front of it and `layers serve` (embedded default: SQLite,
//!   in-process limits, billing on, live key) and measures direct calls to the mock side by side
//!   with calls through haproxy and through Layers, printing a Markdown report. With
//!   `--postgres ADMIN_URL [--redis URL]`, the gateway runs on a fresh PostgreSQL database (and
//!   Redis) instead: the production shape.
//! - `layers-bench spin [--threads N]`: spins N threads until killed (the busy loop of the c=1
//!   scenarios, started under `nice -n 19`).
#![allow(clippy::print_stdout, clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used)]

mod backlog;
mod busy;
mod haproxy;
mod load;
mod mock;
mod report;
mod run;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.first().map(String::as_str) {
        Some("mock") => {
            let listen = flag("--listen").unwrap_or_else(|| "127.0.0.1:0".into()).parse()?;
            rt.block_on(mock::run(listen))
        }
        Some("load") => {
            // Ad hoc load against one target, for profiling: prints one report line.
            let target = load::Target {
                addr: flag("--addr").unwrap_or_else(|| "127.0.0.1:8080".into()).parse()?,
                path: "/v1/chat/completions".into(),
                bearer: flag("--key"),
                body: bytes::Bytes::from(format!(
                    r#"{{"model":"{}","messages":[{{"role":"user","content":"Hello, how are you?"}}]{}}}"#,
                    flag("--model").unwrap_or_else(|| "sandbox/echo".into()),
                    if args.iter().any(|a| a == "--stream") { r#","stream":true"# } else { "" }
                )),
                ttfb: args.iter().any(|a| a == "--stream"),
            };
            let c: usize = flag("-c").map(|s| s.parse()).transpose()?.unwrap_or(1);
            let secs: u64 = flag("--seconds").map(|s| s.parse()).transpose()?.unwrap_or(10);
            let o = rt.block_on(load::run(&target, c, std::time::Duration::from_secs(secs)))?;
            println!(
                "rps {:.0} p50 {} µs p99 {} µs errors {}",
                o.rps(),
                o.percentile(0.5),
                o.percentile(0.99),
                o.errors
            );
            Ok(())
        }
        Some("run") => {
            let layers = flag("--layers").unwrap_or_else(|| "target/release/layers".into());
            let seconds: u64 = flag("--seconds").map(|s| s.parse()).transpose()?.unwrap_or(10);
            let haproxy = haproxy::Haproxy {
                bin: flag("--haproxy").unwrap_or_else(|| "haproxy".into()),
                threads: flag("--haproxy-threads").map(|s| s.parse()).transpose()?.unwrap_or(2),
            };
            let deployment = match (flag("--postgres"), flag("--redis")) {
                (Some(postgres_admin_url), redis_url) => run::Deployment::Production { postgres_admin_url, redis_url },
                (None, None) => run::Deployment::Embedded,
                (None, Some(_)) => anyhow::bail!("--redis needs --postgres"),
            };
            let report = rt.block_on(run::run(&run::Options { layers, haproxy, seconds }, &deployment))?;
            println!("{report}");
            Ok(())
        }
        Some("spin") => {
            let threads = flag("--threads").map(|s| s.parse()).transpose()?.unwrap_or_else(busy::cpus);
            busy::spin(threads)
        }
        _ => {
            eprintln!(
                "usage: layers-bench mock [--listen ADDR] | \
                 layers-bench run [--layers PATH] [--seconds N] [--haproxy PATH] [--haproxy-threads N] \
                 [--postgres ADMIN_URL [--redis URL]] | layers-bench spin [--threads N]"
            );
            std::process::exit(2);
        }
    }
}
