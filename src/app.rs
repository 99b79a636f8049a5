//! The service: [`App::build`] makes every part from the configuration and its
//! [`Dependencies`] (AWS clients in production, in-memory fakes in tests), and
//! [`App::run_until_stopped`] runs it until stopped and shuts down in order. `tugboat serve`,
//! every test and every benchmark build the service this way, so that tests run what
//! production runs.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::Supervisor;
use tokio::sync::{oneshot, watch};

use crate::actors::ActorSpawn;
use crate::actors::intake::IntakeActor;
use crate::admin::{self, AdminState};
use crate::aws::Clients;
use crate::aws::ecs::{EcsClient, ElbTargets};
use crate::aws::sns::SnsNotifier;
use crate::aws::sqs::SqsQueues;
use crate::config::Config;
use crate::engine::{Dispatcher, Engine, EngineOptions, Spawn};
use crate::intake::{Intake, IntakeConfig, IntakeStats};
use crate::journal::Journal;
use crate::journal::sled::SledJournal;
use crate::ports::{Ports, Queue, QueueSource};
use crate::routing::Router;
use crate::workflows::{Catalog, Setup};

/// Why the service could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Startup(String),
    #[error("{0}")]
    Runtime(String),
}

/// What the service talks to. [`Dependencies::aws`] in production; tests replace any part.
pub struct Dependencies {
    /// Opens the configured queues and DLQs.
    pub queues: Arc<dyn QueueSource>,
    /// The outside services workflows reach.
    pub ports: Ports,
    /// The journal; `None` opens sled at `journal.path`.
    pub journal: Option<Arc<dyn Journal>>,
    /// The workflow kinds to build (the built-in ones, plus any a test adds).
    pub catalog: Catalog,
    /// How instances run: supervised actors, in the service.
    pub spawn: Arc<dyn Spawn>,
}

impl std::fmt::Debug for Dependencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependencies")
            .field("catalog", &self.catalog)
            .finish_non_exhaustive()
    }
}

impl Dependencies {
    /// The real thing: AWS clients from the configuration, the notification topics resolved
    /// (an unknown topic stops the start), a sled journal, supervised actors.
    pub async fn aws(config: &Config) -> Result<Dependencies, AppError> {
        let clients = Clients::new(&config.aws).await;
        let ports = aws_ports(&clients, config, true).await?;
        Ok(Dependencies {
            queues: ports.queues.clone(),
            ports,
            journal: match config.journal.kind {
                crate::config::JournalKind::Dynamodb => {
                    Some(crate::aws::journal::DynamoJournal::new(
                        clients.dynamodb.clone(),
                        &config.journal.table,
                        &process_owner(),
                        config.journal.lease,
                    ))
                }
                crate::config::JournalKind::Sled => None,
            },
            catalog: Catalog::builtin(),
            spawn: Arc::new(ActorSpawn),
        })
    }

    /// The AWS ports without the notification topics (nothing publishes): what the CLI builds
    /// a workflow's page with when no service runs. Makes no call until a port is used.
    pub async fn aws_ports_for_reading(config: &Config) -> Result<Ports, AppError> {
        aws_ports(&Clients::new(&config.aws).await, config, false).await
    }

    /// In-memory ports over `queues`, a sled journal at `journal.path` unless one is given,
    /// the built-in workflows, supervised actors: for in-process tests and benchmarks.
    pub fn memory(queues: Arc<dyn QueueSource>) -> Dependencies {
        Dependencies {
            queues: queues.clone(),
            ports: Ports {
                queues,
                ..Ports::memory()
            },
            journal: None,
            catalog: Catalog::builtin(),
            spawn: Arc::new(ActorSpawn),
        }
    }
}

/// Ends a running service: the first `stop` begins the graceful shutdown.
#[derive(Debug, Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// The ports over AWS clients; the notification topics resolved (an unknown one is an error)
/// when `notify`.
async fn aws_ports(clients: &Clients, config: &Config, notify: bool) -> Result<Ports, AppError> {
    let topics = |t: &Option<String>| if notify { t.clone() } else { None };
    let notifier = SnsNotifier::resolve(
        clients.sns.clone(),
        topics(&config.notify.success_topic).as_deref(),
        topics(&config.notify.error_topic).as_deref(),
        topics(&config.notify.anomaly_topic).as_deref(),
    )
    .await
    .map_err(|e| AppError::Startup(format!("notify topics: {e}")))?;
    let ec2 = Arc::new(crate::aws::ec2::Ec2Inventory::new(clients.sdk.clone()));
    Ok(Ports {
        notifier: Arc::new(notifier),
        ecs: Arc::new(EcsClient::new(clients.ecs.clone())),
        targets: Arc::new(ElbTargets::new(clients.elbv2.clone())),
        mqtt: Arc::new(crate::mqtt::MqttConnector::default()),
        http: Arc::new(crate::http::HttpConnector::new().map_err(AppError::Startup)?),
        objects: Arc::new(crate::aws::s3::S3Objects::new(clients.s3.clone())),
        costs: Arc::new(crate::aws::dynamodb::DynamoCosts::new(
            clients.dynamodb.clone(),
        )),
        clock: Arc::new(crate::ports::clock::SystemClock),
        lifecycle: Arc::new(crate::aws::autoscaling::AutoScalingLifecycle::new(
            clients.autoscaling.clone(),
        )),
        queues: Arc::new(SqsQueues::new(clients.sqs.clone())),
        inventory: ec2.clone(),
        power: ec2,
        services: Arc::new(crate::aws::ecs::EcsServices::new(clients.sdk.clone())),
        databases: Arc::new(crate::aws::rds::RdsDatabases::new(clients.sdk.clone())),
        metrics: Arc::new(crate::aws::cloudwatch::CloudWatchMetrics::new(
            clients.sdk.clone(),
        )),
        accounts: Arc::new(crate::aws::accounts::AssumedAccounts::new(
            clients.sdk.clone(),
        )),
        findings: Arc::new(crate::aws::dynamodb::DynamoFindings::new(
            clients.dynamodb.clone(),
        )),
        files: Arc::new(crate::ports::files::Disk),
        items: Arc::new(crate::aws::dynamodb::DynamoItems::new(
            clients.dynamodb.clone(),
        )),
    })
}

/// A built service, not yet running.
pub struct App {
    config: Config,
    journal: Arc<dyn Journal>,
    dispatcher: Arc<Dispatcher>,
    intakes: Vec<Arc<Intake>>,
    listener: tokio::net::TcpListener,
    admin_addr: SocketAddr,
    /// The pages the workflows add to the console.
    pages: Vec<crate::workflows::BuiltPage>,
    /// The configured schedules, compiled.
    schedules: Vec<crate::schedule::Schedule>,
    /// The ingress's listener and the queue it puts events on, when `[ingress]` is set.
    ingress: Option<(tokio::net::TcpListener, String)>,
    stopper: Stopper,
    shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Builds every part: journal, workflows (from config and ports), engine, router, one
    /// intake per queue (its queue, DLQ and redrive policy read now), the admin listener.
    pub async fn build(config: Config, deps: Dependencies) -> Result<App, AppError> {
        let startup = |e: String| AppError::Startup(e);
        let journal: Arc<dyn Journal> = match deps.journal {
            Some(j) => j,
            None => Arc::new(
                SledJournal::open(&config.journal.path).map_err(|e| startup(e.to_string()))?,
            ),
        };
        let setup = Setup {
            config: &config,
            ports: &deps.ports,
        };
        let registry = deps.catalog.build(setup).await.map_err(startup)?;
        let router = Arc::new(Router::new(config.compiled_routes().map_err(startup)?));
        let (shutdown_tx, shutdown) = watch::channel(false);
        let engine = Arc::new(
            Engine::new(
                journal.clone(),
                registry,
                deps.ports.notifier.clone(),
                EngineOptions {
                    max_in_process_wait: config.engine.max_in_process_wait,
                    max_panics: config.engine.max_panics,
                    per_kind_concurrency: config.engine.workflow_concurrency,
                },
                shutdown.clone(),
            )
            .with_clock(deps.ports.clock.clone()),
        );
        let dispatcher = Dispatcher::new(engine, deps.spawn);

        let mut intakes = Vec::new();
        for q in &config.queues {
            if q.receive_wait >= config.shutdown.deadline {
                tracing::warn!(queue = %q.name, receive_wait = ?q.receive_wait, deadline = ?config.shutdown.deadline,
                    "receive_wait is not below shutdown.deadline: a shutdown may abandon a receive in flight, and SQS may hide what it delivers to it for the visibility timeout");
            }
            let queue = deps
                .queues
                .open(q.url.as_deref().unwrap_or(&q.name))
                .await
                .map_err(|e| startup(format!("queue {}: {e}", q.name)))?;
            let dlq: Option<Arc<dyn Queue>> = match &q.dlq {
                Some(d) => Some(
                    deps.queues
                        .open(d)
                        .await
                        .map_err(|e| startup(format!("dlq of queue {}: {e}", q.name)))?,
                ),
                None => None,
            };
            let max_receive_count = queue
                .max_receive_count()
                .await
                .map_err(|e| startup(format!("redrive policy of queue {}: {e}", q.name)))?;
            intakes.push(Arc::new(Intake {
                config: IntakeConfig {
                    queue: q.name.clone(),
                    concurrency: q.concurrency,
                    visibility_timeout: q.visibility_timeout,
                    wait: q.receive_wait,
                    unmatched: config.unmatched,
                    shutdown_deadline: config.shutdown.deadline,
                    pause_recheck: config.engine.pause_recheck,
                    max_receive_count,
                    trust: crate::intake::trust::Trust::new(&config.security, q),
                },
                queue,
                dlq,
                router: router.clone(),
                dispatcher: dispatcher.clone(),
                stats: Arc::new(IntakeStats::default()),
                parked: Default::default(),
            }));
        }

        let listener = tokio::net::TcpListener::bind(config.admin.listen)
            .await
            .map_err(|e| startup(format!("admin listener on {}: {e}", config.admin.listen)))?;
        let admin_addr = listener.local_addr().map_err(|e| startup(e.to_string()))?;
        // The paused routes, as the journal keeps them.
        dispatcher
            .engine()
            .paused
            .load(journal.as_ref())
            .await
            .map_err(|e| startup(format!("paused routes: {e}")))?;
        // The pages the workflows add to the console (interruptions, costs).
        let pages = deps.catalog.pages(setup);
        let schedules = config
            .compiled_schedules()
            .map_err(|e| startup(e.to_string()))?;
        let ingress = match &config.ingress {
            Some(i) => {
                let queues: Vec<&str> = config.queues.iter().map(|q| q.name.as_str()).collect();
                let queue = i
                    .check(&queues)
                    .map_err(|(f, e)| startup(format!("ingress.{f}: {e}")))?;
                let listener = tokio::net::TcpListener::bind(i.listen)
                    .await
                    .map_err(|e| startup(format!("ingress listener on {}: {e}", i.listen)))?;
                Some((listener, queue))
            }
            None => None,
        };
        Ok(App {
            pages,
            schedules,
            ingress,
            config,
            journal,
            dispatcher,
            intakes,
            listener,
            admin_addr,
            stopper: Stopper(Arc::new(shutdown_tx)),
            shutdown,
        })
    }

    /// Where the admin listener listens (a port chosen by the OS when configured as 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn journal(&self) -> Arc<dyn Journal> {
        self.journal.clone()
    }

    /// Each queue's counters.
    pub fn stats(&self) -> Vec<(String, Arc<IntakeStats>)> {
        self.intakes
            .iter()
            .map(|i| (i.config.queue.clone(), i.stats.clone()))
            .collect()
    }

    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Runs until stopped: every intake settles or releases its messages within the shutdown
    /// deadline, the journal is flushed, the admin listener closes. Must run inside an actix
    /// System (the intakes and instances are supervised actors).
    pub async fn run_until_stopped(self) -> Result<(), AppError> {
        let scraped = crate::admin::Scraped {
            intakes: self.stats(),
            dispatcher: self.dispatcher.clone(),
        };
        let queues = self
            .intakes
            .iter()
            .map(|i| admin::QueueHandles {
                name: i.config.queue.clone(),
                queue: i.queue.clone(),
                dlq: i.dlq.clone(),
            })
            .collect();
        let mut console =
            admin::Console::new(&self.config, self.admin_addr, queues, self.pages.clone());
        console.schedules = self.schedules.clone();
        let state = AdminState {
            journal: self.journal.clone(),
            intakes: self.stats(),
            dispatcher: self.dispatcher.clone(),
            shutdown: self.shutdown.clone(),
            metrics: Arc::new(self.dispatcher.engine().metrics.registry(Box::new(scraped))),
            console: Arc::new(console),
        };
        // A shared journal: other processes pause and resume routes too.
        if self.journal.is_shared() {
            let engine = self.dispatcher.engine().clone();
            let mut shutdown = self.shutdown.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = every.tick() => {
                            if let Err(e) = engine.paused.load(engine.journal.as_ref()).await {
                                tracing::warn!(error = %e, "could not read the paused routes");
                            }
                        }
                        _ = crate::engine::shutdown_begun(&mut shutdown) => return,
                    }
                }
            });
        }
        // The schedules: each tick an event on its queue.
        let scheduler = crate::schedule::runner::Scheduler {
            schedules: self.schedules.clone(),
            queues: self
                .intakes
                .iter()
                .map(|i| (i.config.queue.clone(), i.queue.clone()))
                .collect(),
            journal: self.journal.clone(),
            clock: self.dispatcher.engine().clock.clone(),
            region: self.config.aws.region.clone(),
            metrics: self.dispatcher.engine().metrics.clone(),
        };
        let schedules = tokio::spawn(scheduler.run(self.shutdown.clone()));
        // The ingress: events from applications onto a queue.
        if let (Some((listener, queue)), Some(settings)) = (self.ingress, &self.config.ingress) {
            let queue = self
                .intakes
                .iter()
                .find(|i| i.config.queue == queue)
                .map(|i| i.queue.clone())
                .ok_or_else(|| AppError::Startup(format!("ingress queue {queue} is not open")))?;
            let addr = listener.local_addr().ok();
            let ingress = crate::ingress::Ingress::new(
                settings.clone(),
                queue,
                self.dispatcher.engine().clock.clone(),
                self.config.aws.region.clone(),
            )
            .with_metrics(self.dispatcher.engine().metrics.clone());
            tracing::info!(ingress = ?addr, "ingress listening");
            tokio::spawn(ingress.serve(listener, self.shutdown.clone()));
        }
        let mut admin_shutdown = self.shutdown.clone();
        let listener = self.listener;
        let admin = tokio::spawn(async move {
            let serve = axum::serve(
                listener,
                admin::router(state).into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = admin_shutdown.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
        tracing::info!(admin = %self.admin_addr, queues = self.intakes.len(),
            workflows = ?self.dispatcher.engine().registry, "tugboat serving");

        let mut done = Vec::new();
        let mut actors = Vec::new();
        for intake in self.intakes {
            let (tx, rx) = oneshot::channel();
            let actor = IntakeActor::new(intake, self.shutdown.clone(), tx);
            actors.push(Supervisor::start(move |_| actor));
            done.push(rx);
        }
        for rx in done {
            let _ = rx.await;
        }
        // Every intake has settled or released its messages; the actors may go.
        drop(actors);
        let _ = schedules.await;
        self.journal
            .flush()
            .map_err(|e| AppError::Runtime(format!("final journal flush: {e}")))?;
        let _ = admin.await;
        tracing::info!(queues = self.config.queues.len(), "tugboat stopped");
        Ok(())
    }
}

/// This process among the owners of a shared journal's instances: host, pid and a random
/// part (a restarted process is another owner; its predecessor's leases run out).
pub fn process_owner() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// `tugboat serve`: builds the service over AWS and runs it until the first SIGTERM or SIGINT,
/// then shuts down (a second signal exits at once). Must run inside an actix System.
pub async fn serve(config: Config) -> Result<(), AppError> {
    let deps = Dependencies::aws(&config).await?;
    let app = App::build(config, deps).await?;
    let stopper = app.stopper();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down (a second signal exits at once)");
        stopper.stop();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting at once");
        std::process::exit(130);
    });
    app.run_until_stopped().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
