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
        /// Print the JSON Schema of `layers.toml` (for editors) instead of checking anything.
        #[arg(long, conflicts_with = "print")]
        schema: bool,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout: `layers man > /usr/local/share/man/man1/layers.1`.
    Man,
    /// Print the OpenAPI 3.1 document of the public API (what `GET /openapi.json` serves).
    Openapi,
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
    /// Credit leases of the gateway nodes.
    Leases {
        #[command(subcommand)]
        command: LeasesCommand,
    },
    /// Sessions of the dashboard.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// The audit trail: one account's events (`--email`), or those of no account (failed
    /// authentications, IP blocks, "log out everyone"), newest first; prints
    /// "TIME SEVERITY EVENT IP DETAILS" per line.
    Audit {
        #[arg(long)]
        email: Option<String>,
        /// Only these event types (repeatable), e.g. --type login_failed --type key_created.
        #[arg(long = "type")]
        types: Vec<String>,
        /// Only events at or after this time: RFC 3339 (2026-12-01T00:00:00Z) or an age (30m, 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only events of this severity or worse.
        #[arg(long, value_parser = ["info", "warning", "critical"])]
        severity: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Stripe payments.
    Stripe {
        #[command(subcommand)]
        command: StripeCommand,
    },
    /// Demo data for trying the dashboard (refused in production).
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
    /// Security events of no account (failed authentications, IP blocks), newest first; prints
    /// "TIME SEVERITY EVENT IP METADATA" per line.
    SecurityEvents {
        /// Only this event type, e.g. ip_blocked or auth_failed.
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// End dashboard sessions: one account's (`--email`) or everyone's (`--all`); prints how
    /// many ended. Audited; running it again ends nothing more.
    Revoke {
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        email: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

/// Which key: by id (always one) or by display prefix (refused when two keys share it).
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct KeyTarget {
    /// The key's id (from `key list` or the dashboard).
    #[arg(long)]
    pub id: Option<String>,
    /// The key's display prefix, e.g. lyr_live_sk_ab12 (as in a leaked key's first characters).
    #[arg(long)]
    pub prefix: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum StripeCommand {
    /// Lists the events Stripe could not deliver within `[stripe] reconcile_window_hours` and
    /// applies each (idempotent: an event already applied changes nothing); prints
    /// "listed N applied N already_applied N ignored N unreadable N failed N" (exit 1 when some
    /// could not be applied now).
    Reconcile,
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Fill an existing account with keys, credits and a month of realistic usage, settled
    /// through the real ledger (refused in production).
    Seed {
        #[arg(long)]
        email: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum LeasesCommand {
    /// Return the credit of leases whose node stopped renewing them; prints "LEASES CREDITS".
    Reap,
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
    /// Change an account's tier (applies at once on every node).
    SetTier {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["free", "starter", "pro", "team"])]
        tier: String,
    },
    /// Override the tier's spend caps for an account, in credits ("default" inherits the tier's).
    SetCaps {
        #[arg(long)]
        email: String,
        #[arg(long)]
        per_request: Option<String>,
        #[arg(long)]
        per_hour: Option<String>,
    },
    /// Suspend an account: every node refuses its keys within a second, its sessions end, it
    /// cannot log in; prints its id. Audited; doing it twice changes nothing more.
    Suspend {
        #[arg(long)]
        email: String,
    },
    /// Lift a suspension; prints the account's id.
    Unsuspend {
        #[arg(long)]
        email: String,
    },
    /// The account's recent requests, newest first: "TIME REQUEST_ID KEY MODEL STATUS CHARGED".
    Usage {
        #[arg(long)]
        email: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Everything of the account as one JSON document (a GDPR access request), on stdout.
    Export {
        #[arg(long)]
        email: String,
    },
    /// Delete an account (a GDPR erasure request): its keys are refused within a second, its
    /// personal data erased, its ledger and usage kept de-identified; prints its id.
    Delete {
        #[arg(long)]
        email: String,
        /// Required: there is no undo.
        #[arg(long)]
        yes: bool,
    },
    /// Override the tier's rate limits for an account ("default" inherits the tier's).
    SetRateLimit {
        #[arg(long)]
        email: String,
        /// Requests per minute per key.
        #[arg(long)]
        rpm: Option<String>,
        /// Tokens per minute per key.
        #[arg(long)]
        tpm: Option<String>,
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
        /// Lifetime spend limit of the key, in credits.
        #[arg(long)]
        spend_limit: Option<String>,
    },
    /// Set a key's caps and spend limit, in credits ("default" removes one); prints its id.
    SetLimits {
        #[command(flatten)]
        target: KeyTarget,
        #[arg(long)]
        per_request: Option<String>,
        #[arg(long)]
        per_hour: Option<String>,
        #[arg(long)]
        spend_limit: Option<String>,
    },
    /// Deactivate a key (every node refuses it within a second); prints its id. Audited;
    /// running it again changes nothing more.
    Deactivate {
        #[command(flatten)]
        target: KeyTarget,
    },
    /// Reactivate a deactivated key; prints its id.
    Reactivate {
        #[command(flatten)]
        target: KeyTarget,
    },
    /// Keys still hashed under an older pepper version (not re-issued since the pepper was
    /// rotated), one per line like `key list`.
    OldPepper,
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
        /// Makes a retried command apply once (e.g. the ticket number).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Change the balance by a signed amount with a reason: `--credits -2` removes 2 credits,
    /// `--credits 2` adds 2 (a removal never takes the balance below zero); prints the new
    /// balance.
    Adjust {
        #[arg(long)]
        email: String,
        #[arg(long, allow_hyphen_values = true)]
        credits: String,
        #[arg(long)]
        reason: String,
        /// Makes a retried command apply once (e.g. the ticket number).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Print the available balance in credits.
    Show {
        #[arg(long)]
        email: String,
    },
}
