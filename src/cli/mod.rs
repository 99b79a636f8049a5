//! The command line: argument parsing, exit codes, and one function per subcommand.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.

mod act;
mod dlq;
mod healthcheck;
mod journal;
mod migrate;
mod pattern;
mod schedule;
mod send;
mod serve;
mod surface;
mod workflows;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::config::{CONFIG_ENV, Config, ConfigError};

#[derive(Debug, Parser)]
#[command(
    name = "tugboat",
    version,
    about = "Consumes AWS SQS queues and runs every event as a supervised, durable workflow.",
    long_about = "Consumes AWS SQS queues and runs every event as a supervised, durable workflow.\n\n\
        Start here: `tugboat migrate` creates the queues, tables and topics; `tugboat serve` runs the \
        service; `tugboat send` puts a test event on a queue.\n\n\
        Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.",
    after_help = "Configuration: one TOML file (--config, or TUGBOAT_CONFIG); any key can be overridden \
        with TUGBOAT__SECTION__KEY=value, e.g. TUGBOAT__AWS__ENDPOINT_URL=http://127.0.0.1:5000."
)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, env = CONFIG_ENV, default_value = "tugboat.toml")]
    pub config: PathBuf,

    /// Log format on stderr: `auto` is text at a terminal and JSON lines (with trace ids)
    /// anywhere else.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "TUGBOAT_LOG_FORMAT",
        default_value = "auto"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: consume the configured queues and run a workflow for every routed
    /// event, until SIGTERM or SIGINT (a second signal exits at once).
    Serve,
    /// Ask the admin listener whether the service is alive (`/healthz`, or `/readyz` with
    /// `--ready`); exit 0 if it is, 1 if not. For container health checks without curl.
    Healthcheck {
        /// The URL to ask. Default: `[admin] listen` from the configuration (loopback for an
        /// unspecified address), or 127.0.0.1:9090.
        #[arg(long)]
        url: Option<String>,
        /// Ask `/readyz` (journal open, queues reachable) instead of `/healthz`.
        #[arg(long)]
        ready: bool,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Create or update the queues, DLQs, tables, topics and subscriptions that the migrations
    /// declare. Idempotent: a second run changes nothing and says so.
    Migrate(migrate::MigrateArgs),
    /// Send a JSON event (or, with --batch, a JSON-lines file) to a configured queue.
    Send(send::SendArgs),
    /// Inspect workflow instances in the journal.
    Workflows(workflows::WorkflowsArgs),
    /// Move the journal's records between kinds: export them as JSON lines, import an export
    /// (from the sled journal into the shared DynamoDB one).
    Journal(journal::JournalArgs),
    /// Inspect and redrive dead letters.
    Dlq(dlq::DlqArgs),
    /// Test an EventBridge pattern against an event.
    Pattern(pattern::PatternArgs),
    /// Explain which configured routes an event would start.
    Route(pattern::RouteArgs),
    /// The configured schedules: list them with their next fire times, test one, pause or
    /// resume one in the running service.
    Schedule(schedule::ScheduleArgs),
    /// Run on an instance: watch the metadata service for interruption notices and run the
    /// local handlers (`--config agent.toml`; see the README's agent section).
    Agent(AgentArgs),
    /// A workflow's own command (`tugboat spot history`, `tugboat cur summarize`): its
    /// registration declares it, so it is added to the parser at run time.
    #[command(skip)]
    Workflow(surface::WorkflowCommand),
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Run the configured handlers against a simulated notice and print the report: a
    /// rehearsal on a real machine without an interruption.
    Simulate {
        /// The notice's kind.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(crate::agent::SIMULATIONS))]
        kind: String,
        /// Time until the simulated deadline.
        #[arg(long = "in", default_value = "120s", value_parser = humantime::parse_duration)]
        within: std::time::Duration,
    },
}

/// A failure of a command, carrying its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad usage or configuration: exit 2.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command was right but the work failed: exit 1.
    #[error("{0}")]
    Runtime(String),
    /// Exit with this code; the command already said why.
    #[error("exit {0}")]
    Quiet(u8),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => 2,
            CliError::Runtime(_) => 1,
            CliError::Quiet(code) => *code,
        }
    }
}

/// Parses the command line and runs it; the whole of `main`.
pub fn main() -> ExitCode {
    let cli = parse();
    let json = match cli.log_format {
        LogFormat::Auto => {
            use std::io::IsTerminal;
            !std::io::stderr().is_terminal()
        }
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    // Traces are the service's: `serve` reads `[telemetry]` (a configuration error is
    // reported by the command itself, below) and the OTEL_* environment.
    let telemetry = match &cli.command {
        Command::Serve => {
            let settings = load_config(&cli.config).ok().and_then(|c| c.telemetry);
            match crate::telemetry::init(json, settings.as_ref(), true) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("tugboat: telemetry: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => {
            let _ = crate::telemetry::init(json, None, false);
            None
        }
    };
    if let Command::Agent(args) = &cli.command {
        // The agent lives on the instance beside the work it protects: one thread, no actor
        // system, the smallest footprint.
        return run_agent(&cli.config, args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tugboat: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // Every command runs in an actix System over a multi-threaded tokio runtime: the service's
    // actors live on this thread (in a LocalSet), SDK calls and the admin listener on the pool.
    let system = actix_rt::System::with_tokio_rt(move || runtime);
    let local = tokio::task::LocalSet::new();
    let result = system.block_on(local.run_until(run(cli)));
    // The work has stopped: what is buffered goes to the collector, within its timeout.
    if let Some(t) = telemetry {
        t.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Quiet(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tugboat: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The command line, with the commands the workflows declare (`spot`, `cur`) beside the
/// service's own; exits with clap's usage message when it does not parse.
fn parse() -> Cli {
    let commands = crate::workflows::Catalog::builtin().commands();
    let mut parser = Cli::command();
    for c in &commands {
        parser = parser.subcommand(c.clap());
        // `tugboat workflows validate|run` for the States Language's tool.
        if let Some(tool) = c.tool.filter(|_| c.tool_under_workflows) {
            parser = parser.mut_subcommand("workflows", |w| w.subcommands((tool.subcommands)()));
        }
    }
    let matches = parser.get_matches();
    let chosen = match matches.subcommand() {
        Some(("workflows", sub)) => sub.subcommand_name().and_then(|tool_sub| {
            commands
                .iter()
                .find(|c| {
                    c.tool_under_workflows
                        && c.tool.is_some_and(|t| {
                            (t.subcommands)().iter().any(|s| s.get_name() == tool_sub)
                        })
                })
                .map(|c| (c.clone(), sub))
        }),
        Some((name, sub)) => commands
            .iter()
            .find(|c| c.name == name)
            .map(|c| (c.clone(), sub)),
        None => None,
    };
    if let Some((spec, sub)) = chosen {
        return Cli {
            config: matches
                .get_one::<PathBuf>("config")
                .cloned()
                .unwrap_or_else(|| PathBuf::from("tugboat.toml")),
            log_format: matches
                .get_one::<LogFormat>("log_format")
                .copied()
                .unwrap_or(LogFormat::Auto),
            command: Command::Workflow(surface::WorkflowCommand {
                spec,
                matches: sub.clone(),
            }),
        };
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn run_agent(config: &std::path::Path, args: &AgentArgs) -> ExitCode {
    let result = crate::agent::config::AgentConfig::load(config)
        .map_err(CliError::Usage)
        .and_then(|config| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::Runtime(format!("cannot start the async runtime: {e}")))?;
            match &args.command {
                None => runtime
                    .block_on(crate::agent::run(config))
                    .map_err(CliError::Runtime),
                Some(AgentCommand::Simulate { kind, within }) => {
                    let report = runtime
                        .block_on(crate::agent::simulate(&config, kind, *within))
                        .map_err(CliError::Usage)?;
                    println!("{report}");
                    Ok(())
                }
            }
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tugboat: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve => serve::run(&cli.config).await,
        Command::Healthcheck {
            url,
            ready,
            timeout,
        } => healthcheck::run(&cli.config, url.as_deref(), ready, timeout).await,
        Command::Migrate(args) => migrate::run(&cli.config, args).await,
        Command::Workflows(args) => workflows::run(&cli.config, args).await,
        Command::Journal(args) => journal::run(&cli.config, args).await,
        Command::Dlq(args) => dlq::run(&cli.config, args).await,
        Command::Pattern(args) => pattern::test(args).await,
        Command::Route(args) => pattern::explain(&cli.config, args).await,
        Command::Schedule(args) => schedule::run(&cli.config, args).await,
        Command::Send(args) => send::run(&cli.config, args).await,
        Command::Workflow(command) => surface::run(&cli.config, command).await,
        // `main` runs the agent on a runtime of its own before this is reached.
        Command::Agent(_) => Err(CliError::Usage(
            "the agent runs on a runtime of its own (run_agent)".into(),
        )),
    }
}

/// Loads and validates the configuration, with the process environment's overrides.
pub fn load_config(path: &Path) -> Result<Config, CliError> {
    Ok(Config::load(
        path,
        std::env::vars(),
        &crate::workflows::Catalog::builtin(),
    )?)
}
