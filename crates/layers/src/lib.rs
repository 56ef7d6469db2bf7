//! The `layers` binary as a library, so tests start the product exactly as `layers serve` does.
//!
//! Components:
//! - [`cli`]: commands and flags.
//! - [`config`]: `layers.toml` + `LAYERS_*` → validated [`config::Settings`]; the built-in
//!   catalogue (`catalogue.toml`).
//! - [`startup`]: open the store, build the services, serve, shut down gracefully.
//! - [`admin`]: operator commands. [`telemetry`]: logging. [`output`]: stdout.

pub mod admin;
pub mod cli;
pub mod config;
pub mod demo;
pub mod output;
pub mod startup;
pub mod telemetry;

use std::process::ExitCode;

use cli::{Cli, Command};

/// EX_CONFIG from sysexits.h: the configuration is invalid.
pub const EXIT_CONFIG: u8 = 78;

pub async fn run(cli: Cli) -> ExitCode {
    let env = startup::process_env();
    match &cli.command {
        Command::CheckConfig { schema: true, .. } => {
            output::emit(&serde_json::to_string_pretty(&config::schema::json_schema()).unwrap_or_default());
            return ExitCode::SUCCESS;
        }
        Command::CheckConfig { print, .. } => return check_config(cli.config.as_deref(), &env, *print),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut <Cli as clap::CommandFactory>::command(), "layers", &mut out);
            output::emit(&String::from_utf8_lossy(&out));
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            let mut out = Vec::new();
            if clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out).is_err() {
                return ExitCode::FAILURE;
            }
            output::emit(&String::from_utf8_lossy(&out));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    if let Command::Openapi = &cli.command {
        output::emit(&layers_server::api::openapi::document().to_pretty_json().unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let settings = match config::load(cli.config.as_deref(), &env) {
        Ok(s) => s,
        Err(errors) => {
            telemetry::init(false, "warn");
            eprint!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init(settings.log_json, &settings.log_level);
    let result = match cli.command {
        Command::Serve => serve(settings).await,
        Command::Migrate => startup::migrate(&settings.database).await.map(|()| {
            tracing::info!("migrations applied");
        }),
        Command::Admin { command } => admin::run(settings, command).await,
        Command::CheckConfig { .. } | Command::Openapi | Command::Completions { .. } | Command::Man => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: config::Settings) -> anyhow::Result<()> {
    let listen = settings.listen;
    let started = std::time::Instant::now();
    let prepared = startup::prepare(settings).await?;
    let listener = startup::bind(listen).map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!(address = %listen, startup_ms = started.elapsed().as_millis() as u64, "Layers is listening");
    startup::serve(prepared, listener, startup::shutdown_signal()).await
}

fn check_config(
    file: Option<&std::path::Path>,
    env: &std::collections::BTreeMap<String, String>,
    print: bool,
) -> ExitCode {
    if print {
        let (raw, _) = config::read(file, env);
        match toml::to_string_pretty(&raw) {
            Ok(text) => output::emit(&text),
            Err(err) => eprintln!("cannot print the configuration: {err}"),
        }
    }
    match config::load(file, env) {
        Ok(_) => {
            eprintln!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
