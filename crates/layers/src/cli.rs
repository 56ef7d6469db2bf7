//! The command line: `serve`, `migrate`, `check-config` and the operator's `admin` commands.
//! Invariant: admin commands print only the value asked for on stdout (scriptable as
//! `KEY=$(layers admin key create …)`); everything else goes to stderr.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "layers", version, about = "Layers: a metered API gateway for large language models")]
pub struct Cli {
    /// Configuration file (TOML). Environment variables LAYERS_* override it.
    #[arg(long, global = true, env = "LAYERS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Apply database migrations (as the database owner).
    Migrate,
    /// Validate the configuration; exit 78 when invalid.
    CheckConfig {
        /// Print the effective configuration, secrets redacted.
        #[arg(long)]
        print: bool,
    },
    /// Operator and incident commands.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Credits (ledgered and audited).
    Credits {
        #[command(subcommand)]
        command: CreditsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account; prints its id.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "free", value_parser = ["free", "starter", "pro", "team"])]
        tier: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key; prints the full key, shown this once only.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["live", "test"])]
        env: String,
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Deactivate a key by its display prefix (e.g. lyr_live_sk_ab12); prints its id.
    Deactivate {
        #[arg(long)]
        prefix: String,
    },
    /// List an account's keys, one per line, tab-separated.
    List {
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Grant credits (1 credit = US$0.01; fractions allowed); prints the new balance.
    Grant {
        #[arg(long)]
        email: String,
        #[arg(long)]
        credits: String,
        #[arg(long)]
        reason: String,
    },
    /// Remove credits with a reason (never below zero); prints the new balance.
    Adjust {
        #[arg(long)]
        email: String,
        #[arg(long, allow_hyphen_values = true)]
        credits: String,
        #[arg(long)]
        reason: String,
    },
    /// Print the available balance in credits.
    Show {
        #[arg(long)]
        email: String,
    },
}
