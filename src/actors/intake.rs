//! The actor around one queue's [`Intake`]: supervised, so that a panic in its loop restarts
//! it (in-flight messages become visible again when their visibility lapses).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Supervised, WrapFuture};
use futures::FutureExt;
use tokio::sync::{oneshot, watch};

use crate::intake::Intake;

pub struct IntakeActor {
    intake: Arc<Intake>,
    shutdown: watch::Receiver<bool>,
    done: Option<oneshot::Sender<()>>,
}

impl IntakeActor {
    pub fn new(
        intake: Arc<Intake>,
        shutdown: watch::Receiver<bool>,
        done: oneshot::Sender<()>,
    ) -> IntakeActor {
        IntakeActor {
            intake,
            shutdown,
            done: Some(done),
        }
    }
}

impl Actor for IntakeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let run = AssertUnwindSafe(self.intake.clone().run(self.shutdown.clone())).catch_unwind();
        ctx.spawn(run.into_actor(self).map(|result, act, ctx| match result {
            Ok(()) => {
                if let Some(done) = act.done.take() {
                    let _ = done.send(());
                }
            }
            Err(_) => {
                tracing::error!(queue = %act.intake.config.queue, "intake panicked; restarting it");
                ctx.stop();
            }
        }));
    }
}

impl Supervised for IntakeActor {}
