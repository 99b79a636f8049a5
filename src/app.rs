//! The service: builds every part from the configuration, runs until a signal, and shuts down
//! in order. Shared by `tugboat serve` and the tests, so that tests run what production runs.

use std::sync::Arc;
use std::time::Duration;

use actix::Supervisor;
use tokio::sync::{oneshot, watch};

use crate::actors::intake::{Intake, IntakeActor, IntakeConfig, IntakeStats};
use crate::admin::{self, AdminState};
use crate::aws::Clients;
use crate::aws::ecs::{EcsClient, ElbTargets};
use crate::aws::sns::SnsNotifier;
use crate::aws::sqs::SqsQueue;
use crate::config::Config;
use crate::engine::{Dispatcher, Engine, EngineOptions, PortEffects};
use crate::journal::Journal;
use crate::journal::sled::SledJournal;
use crate::ports::Queue;
use crate::routing::Router;
use crate::workflows::Registry;

/// Why the service could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Startup(String),
    #[error("{0}")]
    Runtime(String),
}

/// Runs the service until the first SIGTERM or SIGINT, then shuts down (a second signal exits
/// at once). Must run inside an actix System.
pub async fn serve(config: Config, registry: Option<Registry>) -> Result<(), AppError> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down (a second signal exits at once)");
        let _ = shutdown_tx.send(true);
        wait_for_signal().await;
        tracing::warn!("second signal: exiting at once");
        std::process::exit(130);
    });
    run(config, registry, shutdown_rx).await
}

/// Runs the service until `shutdown` becomes true.
pub async fn run(
    config: Config,
    registry: Option<Registry>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
    let journal: Arc<dyn Journal> = Arc::new(
        SledJournal::open(&config.journal.path).map_err(|e| AppError::Startup(e.to_string()))?,
    );
    let clients = Clients::new(&config.aws).await;
    let notifier = SnsNotifier::resolve(
        clients.sns.clone(),
        config.notify.success_topic.as_deref(),
        config.notify.error_topic.as_deref(),
        config.notify.anomaly_topic.as_deref(),
    )
    .await
    .map_err(|e| AppError::Startup(format!("notify topics: {e}")))?;
    let targets = ElbTargets::new(clients.elbv2.clone());
    let mut services = config.services.clone();
    for (name, mapping) in services.iter_mut() {
        mapping.target_group = targets
            .resolve(&mapping.target_group)
            .await
            .map_err(|e| AppError::Startup(format!("services.{name}.target_group: {e}")))?;
    }
    let registry = registry.unwrap_or_else(|| Registry::with_services(services));
    let effects = PortEffects {
        notifier: Some(Arc::new(notifier)),
        ecs: Some(Arc::new(EcsClient::new(clients.ecs.clone()))),
        targets: Some(Arc::new(targets)),
        ..Default::default()
    };
    let router = Arc::new(Router::from_config(&config.routes).map_err(AppError::Startup)?);
    let engine = Arc::new(Engine::new(
        journal.clone(),
        registry,
        Arc::new(effects),
        EngineOptions {
            max_in_process_wait: config.engine.max_in_process_wait,
            max_panics: config.engine.max_panics,
            per_kind_concurrency: config.engine.workflow_concurrency,
        },
        shutdown.clone(),
    ));
    let dispatcher = Dispatcher::new(engine);

    let mut intakes = Vec::new();
    for q in &config.queues {
        let target = q.url.as_deref().unwrap_or(&q.name);
        let queue = SqsQueue::resolve(&clients.sqs, target)
            .await
            .map_err(|e| AppError::Startup(format!("queue {}: {e}", q.name)))?;
        let dlq = match &q.dlq {
            Some(d) => Some(Arc::new(
                SqsQueue::resolve(&clients.sqs, d)
                    .await
                    .map_err(|e| AppError::Startup(format!("dlq of queue {}: {e}", q.name)))?,
            ) as Arc<dyn Queue>),
            None => None,
        };
        intakes.push(Arc::new(Intake {
            config: IntakeConfig {
                queue: q.name.clone(),
                concurrency: q.concurrency,
                visibility_timeout: q.visibility_timeout,
                wait: Duration::from_secs(20),
                unmatched: config.unmatched,
                shutdown_deadline: config.shutdown.deadline,
            },
            queue: Arc::new(queue),
            dlq,
            router: router.clone(),
            dispatcher: dispatcher.clone(),
            stats: Arc::new(IntakeStats::default()),
        }));
    }

    let listener = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .map_err(|e| {
            AppError::Startup(format!("admin listener on {}: {e}", config.admin.listen))
        })?;
    let admin_addr = listener
        .local_addr()
        .map_err(|e| AppError::Startup(e.to_string()))?;
    let state = AdminState {
        journal: journal.clone(),
        intakes: intakes
            .iter()
            .map(|i| (i.config.queue.clone(), i.stats.clone()))
            .collect(),
        dispatcher: dispatcher.clone(),
        shutdown: shutdown.clone(),
    };
    let mut admin_shutdown = shutdown.clone();
    let admin = tokio::spawn(async move {
        let serve =
            axum::serve(listener, admin::router(state)).with_graceful_shutdown(async move {
                let _ = admin_shutdown.wait_for(|s| *s).await;
            });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "admin listener failed");
        }
    });
    tracing::info!(admin = %admin_addr, queues = intakes.len(), "tugboat serving");

    let mut done = Vec::new();
    let mut actors = Vec::new();
    for intake in intakes {
        let (tx, rx) = oneshot::channel();
        let actor = IntakeActor::new(intake, shutdown.clone(), tx);
        actors.push(Supervisor::start(move |_| actor));
        done.push(rx);
    }
    for rx in done {
        let _ = rx.await;
    }
    // Every intake has settled or released its messages; the actors may go.
    drop(actors);
    journal
        .flush()
        .map_err(|e| AppError::Runtime(format!("final journal flush: {e}")))?;
    let _ = admin.await;
    tracing::info!("tugboat stopped");
    Ok(())
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
